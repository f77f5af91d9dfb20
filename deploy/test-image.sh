#!/usr/bin/env bash
# The container deployment, end to end, on this machine's Docker (minutes; not part of CI, which stays docker-free):
#   1. builds the serving and convert images (and, where no registry is reachable, the base from
#      deploy/build-local-base.sh and PostgreSQL from deploy/postgres) and checks them: sizes, no root, no compilers,
#      no torch in the serving image, no build CA left behind;
#   2. converts demo weights with the convert job, starts the compose stack, uploads a shelf photo through the API
#      and opens the dashboard's health URL;
#   3. restarts everything and checks the photo is still there;
#   4. upgrades: the schema set back a version, the dashboard and the API started together migrate it exactly once;
#   5. backs up, wipes the volumes, restores into a fresh stack and finds the photo again.
# It prints a summary (build times, sizes, start-to-healthy times) for the README.
#
# Usage: deploy/test-image.sh [--clean] [--keep]
#   --clean  start from an empty Docker build cache (and rebuild the local base image when it is the one used)
#   --keep   leave the stack running afterwards (docker compose -p shelf-image-test down -v removes it)
# Env: DOCKER (default docker; it must build with BuildKit: buildx, or Debian's docker.io 20.10 client),
#      SHELF_BASE (default: the local base shelf-local/python:3.11-bookworm, built when missing),
#      SHELF_POSTGRES_IMAGE (default: built from deploy/postgres on SHELF_BASE), CA_BUNDLE (the build secret
#      extra_ca, default /etc/ssl/certs/ca-certificates.crt when present).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
docker=${DOCKER:-docker}
base=${SHELF_BASE:-shelf-local/python:3.11-bookworm}
local_base=shelf-local/python:3.11-bookworm
ca=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
project=shelf-image-test
clean=0 keep=0
for arg in "$@"; do
  case $arg in
    --clean) clean=1 ;;
    --keep) keep=1 ;;
    *) echo "usage: deploy/test-image.sh [--clean] [--keep]" >&2; exit 2 ;;
  esac
done

started=$(date +%s)
log() { printf '[%4ss] %s\n' "$(( $(date +%s) - started ))" "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
summary=()
note() { summary+=("$*"); log "$*"; }
now() { date +%s.%N; }
seconds_since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }

"$docker" info >/dev/null 2>&1 || fail "no Docker daemon answers ($docker info)"
if "$docker" compose version >/dev/null 2>&1; then
  compose_cmd=("$docker" compose)
elif command -v docker-compose >/dev/null; then
  compose_cmd=(docker-compose)
else
  fail "neither 'docker compose' nor docker-compose is installed"
fi
compose() { "${compose_cmd[@]}" -f "$root/compose.yaml" -p "$project" "$@"; }
secret=()
[ -s "$ca" ] && secret=(--secret "id=extra_ca,src=$ca")
build() {  # build TAG ARGS...: BuildKit, with the CA secret; prints the seconds it took
  local tag=$1 t0
  shift
  t0=$(now)
  DOCKER_BUILDKIT=1 "$docker" build -q "${secret[@]}" --build-arg "BASE=$base" -t "$tag" "$@" >/dev/null \
    || fail "docker build of $tag failed (BuildKit is needed: install buildx, or use Debian's docker.io client)"
  seconds_since "$t0"
}
size_of() { "$docker" image inspect -f '{{.Size}}' "$1"; }
human() { python3 -c "import sys; print(f'{int(sys.argv[1]) / 1e9:.2f} GB')" "$1"; }
in_image() { "$docker" run --rm --entrypoint sh "$1" -c "$2"; }

cleanup() {
  if [ "$keep" = 0 ]; then
    compose --profile convert --profile ray down -v --remove-orphans >/dev/null 2>&1 || true
  fi
  [ -n "${work:-}" ] && rm -rf "$work"
}
trap cleanup EXIT
work=$(mktemp -d /tmp/shelf-image-test.XXXXXX)
chmod 777 "$work"  # the containers' user writes backups here

log "== 1. images (Docker $("$docker" version -f '{{.Server.Version}}'), compose: ${compose_cmd[*]})"
"$root/deploy/make-secrets.sh" >/dev/null  # compose reads the secret files' names even to stop a stack
compose --profile convert --profile ray down -v --remove-orphans >/dev/null 2>&1 || true
if [ "$clean" = 1 ]; then
  "$docker" image rm -f shelf:test shelf-convert:test shelf-local/postgres:15 >/dev/null 2>&1 || true
  [ "$base" = "$local_base" ] && { "$docker" image rm -f "$local_base" >/dev/null 2>&1 || true; }
  "$docker" builder prune -af >/dev/null
  log "build cache emptied"
fi
if [ "$base" = "$local_base" ] && ! "$docker" image inspect "$local_base" >/dev/null 2>&1; then
  t0=$(now)
  DOCKER="$docker" "$root/deploy/build-local-base.sh" "$local_base" >/dev/null
  note "base image $local_base (debootstrap): $(seconds_since "$t0") s, $(human "$(size_of "$local_base")")"
fi
took=$(build shelf:test --target serve .)
note "serving image shelf:test built in $took s: $(human "$(size_of shelf:test)")"
took=$(build shelf-convert:test --target convert .)
note "convert image shelf-convert:test built in $took s: $(human "$(size_of shelf-convert:test)")"
if [ -z "${SHELF_POSTGRES_IMAGE:-}" ]; then
  export SHELF_POSTGRES_IMAGE=shelf-local/postgres:15
  took=$(build "$SHELF_POSTGRES_IMAGE" deploy/postgres)
  note "PostgreSQL image $SHELF_POSTGRES_IMAGE (deploy/postgres, no registry here) built in $took s"
fi
[ "$(size_of shelf:test)" -le 1500000000 ] || fail "the serving image is over 1.5 GB"
[ "$(in_image shelf:test 'id -u')" != 0 ] || fail "the serving image runs as root"
compilers=$(in_image shelf:test 'for c in gcc cc c++ g++ clang make; do command -v $c; done; true')
[ -z "$compilers" ] || fail "compilers in the serving image: $compilers"
in_image shelf:test 'python -c "import torch"' >/dev/null 2>&1 && fail "torch is in the serving image"
in_image shelf:test 'python -c "import onnxruntime, streamlit, ray, psycopg; import shelf.serving.cli"' \
  || fail "the serving image cannot import its packages"
in_image shelf:test 'python -c "from rapidocr_onnxruntime import RapidOCR; RapidOCR()"' >/dev/null \
  || fail "the serving image cannot read shelf-edge prices (RapidOCR and its OpenCV)"
leftovers=$(in_image shelf:test 'ls -A /run/secrets 2>/dev/null; ls /tmp | grep build-; grep -rl build- /etc/apt; true')
[ -z "$leftovers" ] || fail "the build CA was left in the image: $leftovers"
in_image shelf:test 'pg_dump --version' | grep -q ' 15\.' || fail "no pg_dump 15 in the serving image"
[ "$("$docker" image inspect -f '{{json .Config.Healthcheck.Test}}' shelf:test)" = '["CMD","shelf-healthcheck"]' ] \
  || fail "no healthcheck"
log "checked: under 1.5 GB, user $(in_image shelf:test 'id -un'), no compilers, no torch, no build CA, pg_dump 15"

log "== 2. the stack: demo weights converted, then up"
token=$(head -n 1 "$root/deploy/secrets/api_token")
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
export SHELF_IMAGE=shelf:test SHELF_CONVERT_IMAGE=shelf-convert:test SHELF_ALLOW_UNVERIFIED_WEIGHTS=1 \
  SHELF_DASHBOARD_PORT=$(free_port) SHELF_API_PORT=$(free_port)
dashboard=http://127.0.0.1:$SHELF_DASHBOARD_PORT api=http://127.0.0.1:$SHELF_API_PORT
# No registry or weights download here: a random-init ResNet-18 (the tests' demo weights), imported and converted
# by the convert job into the data volume.
compose --profile convert run --rm -T convert python -c "import torch, torchvision; torch.manual_seed(0); \
torch.save(torchvision.models.resnet18().state_dict(), '/data/demo-resnet18.pth')"
compose --profile convert run --rm -T convert python -m shelf weights import /data/demo-resnet18.pth | sed -n 1p
compose --profile convert run --rm -T convert | sed -n 1p

container() { compose ps -q "$1"; }
wait_healthy() {  # wait_healthy SERVICE URL: prints seconds from the container's start to the URL's first 200
  local id started_at deadline=$(( $(date +%s) + 180 ))
  id=$(container "$1")
  until curl -fsS -o /dev/null "$2" 2>/dev/null; do
    [ "$(date +%s)" -lt "$deadline" ] || { compose logs --tail=40 "$1" >&2; fail "$1 never answered $2"; }
    sleep 0.2
  done
  started_at=$("$docker" inspect -f '{{.State.StartedAt}}' "$id")
  seconds_since "$(date -d "$started_at" +%s.%N)"
}
docker_health() { "$docker" inspect -f '{{.State.Health.Status}}' "$(container "$1")"; }
healthy_by_docker() {  # seconds from the container's start to its first passing healthcheck (every 5 s)
  local deadline=$(( $(date +%s) + 120 ))
  until [ "$(docker_health "$1")" = healthy ]; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "Docker never saw $1 healthy"
    sleep 0.5
  done
  "$docker" inspect "$(container "$1")" | python3 -c "import datetime as dt, json, sys
state = json.load(sys.stdin)[0]['State']
when = lambda s: dt.datetime.fromisoformat(s[:26].rstrip('Z') if '.' in s else s.rstrip('Z'))
ok = min(when(e['End']) for e in state['Health']['Log'] if e['ExitCode'] == 0)
print(f'{(ok - when(state[\"StartedAt\"])).total_seconds():.1f}')"
}
compose up -d
took=$(wait_healthy dashboard "$dashboard/_stcore/health")
took_api=$(wait_healthy api "$api/v1/health")
took_docker=$(healthy_by_docker dashboard)
note "first start: dashboard answers its health URL $took s after its container started (Docker: healthy at \
$took_docker s), API $took_api s"
log "API /v1/health: $(curl -fsS "$api/v1/health")"

# Shelf photos: the real ones beside the project where they are (into this test's temp folder and volumes only,
# never into an image: research-only licence), else generated shelves.
real=$root/../shared/data/real-shelves
mkdir -p "$work/archive"
for n in 1 2 3; do
  if [ "$(ls "$real"/*.[jJ][pP][gG] 2>/dev/null | wc -l)" -ge 3 ]; then
    cp "$(ls "$real"/*.[jJ][pP][gG] | sed -n "${n}p")" "$work/archive/shelf-$n.jpg"
  else
    in_image shelf:test "python -c \"import io, sys; from PIL import Image, ImageDraw; im = Image.new('RGB', \
(1200, 800), 'white'); d = ImageDraw.Draw(im); [d.rectangle((40 + 110 * i, 60 + 250 * r, 130 + 110 * i, \
280 + 250 * r), fill=((30 * i + 70 * $n) % 255, 90 * r, 200)) for i in range(10) for r in range(3)]; \
b = io.BytesIO(); im.save(b, 'JPEG'); sys.stdout.buffer.write(b.getvalue())\"" > "$work/archive/shelf-$n.jpg"
  fi
done
chmod -R a+rX "$work/archive"
photo=$work/archive/shelf-1.jpg
t0=$(now)
posted=$(curl -fsS -H "Authorization: Bearer $token" -F "photo=@$photo" -F store=Store-1 -F aisle=7 \
  -F regions=auto "$api/v1/photos") || fail "uploading the photo through the API failed"
field() { python3 -c "import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
photo_id=$(field "$posted" photo_id) sha=$(field "$posted" sha256)
regions=$(python3 -c "import json, sys; print(len(json.loads(sys.argv[1])['regions']))" "$posted")
note "photo $(basename "$photo") uploaded through the API in $(seconds_since "$t0") s: id $photo_id, $regions regions"
t0=$(now)
calibrated=$(compose exec -T api python -m shelf weights recalibrate) || fail "fast mode cannot be built without torch"
note "fast mode (int8) quantised in the serving container, without torch, in $(seconds_since "$t0") s: \
${calibrated%%;*}"
[ "$(curl -fsS "$dashboard/_stcore/health")" = ok ] || fail "the dashboard's health URL does not say ok"
page=$(curl -fsS "$dashboard/") && [[ $page == *"<title>Streamlit</title>"* ]] || fail "the dashboard's page does not load"
log "dashboard $dashboard/_stcore/health: ok; health by Docker: dashboard $(docker_health dashboard), api $(docker_health api)"
stored() {  # stored: the photo's sha256 as the API has it now
  field "$(curl -fsS -H "Authorization: Bearer $token" "$api/v1/photos/$photo_id")" sha256
}

log "== 3. restart everything"
compose down
compose up -d
took=$(wait_healthy dashboard "$dashboard/_stcore/health")
took_api=$(wait_healthy api "$api/v1/health")
took_docker=$(healthy_by_docker dashboard)
note "after a full restart: dashboard answers $took s after its container started (Docker: healthy at \
$took_docker s), API $took_api s"
[ "$(stored)" = "$sha" ] || fail "the photo is gone after the restart"
again=$(curl -fsS -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" -F "photo=@$photo" "$api/v1/photos")
[ "$again" = 200 ] || fail "the same photo was stored again (HTTP $again, expected 200 already stored)"
note "photo $photo_id still there after the restart; posting it again answers 200 (already stored)"

log "== 4. upgrade: the schema set back to version 6 (before shelf-edge prices), then the dashboard and the API start together"
latest=$(in_image shelf:test 'python -c "from shelf.storage.store import SCHEMA_VERSION; print(SCHEMA_VERSION)"')
psql() { compose exec -T db psql --username=shelf --dbname=shelf -v ON_ERROR_STOP=1 -Atc "$1"; }
psql "DROP TABLE price_corrections, price_label_facings, price_labels, price_scans; \
ALTER TABLE planograms DROP COLUMN price; DELETE FROM schema_version; \
INSERT INTO schema_version (version, applied_at) VALUES (6, now())" >/dev/null
compose restart api dashboard >/dev/null
wait_healthy dashboard "$dashboard/_stcore/health" >/dev/null
wait_healthy api "$api/v1/health" >/dev/null
versions=$(psql "SELECT string_agg(version::text, ',' ORDER BY version) FROM schema_version")
expected=$(seq -s, 6 "$latest")
[ "$versions" = "$expected" ] || fail "schema versions after the upgrade: $versions (expected $expected: migrated once)"
[ "$(psql "SELECT to_regclass('price_labels') IS NOT NULL")" = t ] || fail "the migration did not run"
[ "$(stored)" = "$sha" ] || fail "the photo is gone after the upgrade"
note "upgrade: schema 6 → $latest applied once (versions $versions) by two services starting together; photo kept"

log "== 5. backup, wipe, restore"
compose run --rm -T -v "$work:/backups" api python -m shelf backup /backups/shelf.tar | sed 's/^/    /'
compose down -v
compose up -d
wait_healthy dashboard "$dashboard/_stcore/health" >/dev/null  # no model yet: the API waits for the restore
compose stop api dashboard >/dev/null
compose run --rm -T -v "$work:/backups" api python -m shelf restore /backups/shelf.tar | sed 's/^/    /'
compose start api dashboard >/dev/null
wait_healthy api "$api/v1/health" >/dev/null
wait_healthy dashboard "$dashboard/_stcore/health" >/dev/null
[ "$(stored)" = "$sha" ] || fail "the photo is not back after the restore"
overlay=$(curl -fsS -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "$api/v1/photos/$photo_id/overlay")
[ "$overlay" = 200 ] || fail "the photo's file is not back after the restore (overlay: HTTP $overlay)"
note "backup ($(du -h "$work/shelf.tar" | cut -f1)) restored into wiped volumes: photo $photo_id and its file are back"

log "== 6. a batch on the Ray profile (a head and a worker container)"
export SHELF_ARCHIVE=$work/archive
compose --profile ray up -d ray-head ray-worker
nodes() { compose exec -T ray-head python -c "import ray; ray.init(address='auto', logging_level='ERROR'); \
print(sum(n['Alive'] for n in ray.nodes()))" 2>/dev/null | tail -n 1; }
deadline=$(( $(date +%s) + 180 ))
until [ "$(nodes)" = 2 ]; do
  [ "$(date +%s)" -lt "$deadline" ] || { compose logs --tail=40 ray-head ray-worker >&2; fail "no 2-node Ray cluster"; }
  sleep 3
done
t0=$(now)
compose exec -T ray-head python -m shelf batch /archive --engine ray --address auto --regions grid:2x2 \
  > "$work/batch.out" 2> "$work/batch.err" || { tail -n 30 "$work/batch.err" >&2; fail "the Ray batch failed"; }
sed 's/^/    /' "$work/batch.out"
photos=$(psql "SELECT count(*) FROM photos")
[ "$photos" = 3 ] || fail "after the Ray batch the store holds $photos photos (expected 3: 1 uploaded + 2 new)"
note "Ray batch on the head + worker cluster, $(seconds_since "$t0") s in all: $(sed -n 1p "$work/batch.out")"

echo
echo "== summary ($(uname -m), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
printf '  %s\n' "${summary[@]}"
echo "PASSED in $(( $(date +%s) - started )) s"
