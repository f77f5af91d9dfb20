"""Region embeddings as the store keeps them: float16 bytes, one blob per photo and run (shelf.storage.schema's
`embeddings` table), read back as float32 for catalog matching."""
from __future__ import annotations

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from shelf.storage.schema import embeddings, regions

EMBEDDING_DTYPE = "<f2"  # float16: half the bytes; catalog matching tolerates it (tests compare both)
EMBEDDING_SIZE = 512


def embedding_bytes(vectors) -> bytes:
    """(N, 512) or (512,) float embeddings → the stored float16 bytes."""
    return np.asarray(vectors, dtype=np.float32).astype(EMBEDDING_DTYPE).tobytes()


def embedding_array(blob: bytes) -> np.ndarray:
    """Stored bytes → (N, 512) float32."""
    return np.frombuffer(blob, dtype=EMBEDDING_DTYPE).reshape(-1, EMBEDDING_SIZE).astype(np.float32)


def region_embeddings_of(engine: Engine, photo_id: int) -> np.ndarray:
    """The stored embeddings of a photo's current regions, in region order, as float32."""
    query = (sa.select(embeddings.c.vectors).select_from(embeddings)
             .where(embeddings.c.photo_id == photo_id, embeddings.c.run_id.in_(
                 sa.select(regions.c.run_id).where(regions.c.photo_id == photo_id, regions.c.active))))
    with engine.connect() as conn:
        blob = conn.execute(query).scalar_one_or_none()
    return embedding_array(blob) if blob is not None else np.zeros((0, EMBEDDING_SIZE), np.float32)
