"""Fidelity: for the same weights, Shelf's probabilities equal torchvision's own reference pipeline."""
import pytest
import torch
from PIL import Image
from torchvision.models import ResNet18_Weights, resnet18

from shelf.ingest.images import decode_image
from shelf.recognition.backends import pooled_features
from shelf.recognition.classify import classify_images
from shelf.recognition.inputs import preprocessing_provenance
from tests.conftest import REAL_PHOTOS, image_bytes, skimage_photo


@pytest.fixture(scope="module")
def reference(weights_file):
    """torchvision's documented inference recipe, written independently of Shelf."""
    weights = ResNet18_Weights.IMAGENET1K_V1
    net = resnet18()
    net.load_state_dict(torch.load(weights_file, weights_only=True))
    net.eval()
    transform = weights.transforms()

    def probabilities(image: Image.Image) -> torch.Tensor:
        with torch.no_grad():
            return net(transform(image).unsqueeze(0)).softmax(dim=1)[0]
    return probabilities


def test_probabilities_match_torchvision_reference_on_real_photos(loaded, reference, photo_bytes):
    decoded = [decode_image(data, name) for name, data in photo_bytes.items()]
    ours = classify_images(loaded, [d.image for d in decoded], top_k=5)
    for name, result in zip(photo_bytes, ours):
        expected = reference(Image.open(skimage_photo(name)).convert("RGB"))
        probabilities = torch.from_numpy(result.probabilities)
        torch.testing.assert_close(probabilities, expected, atol=1e-4, rtol=0)
        # Untrained weights give flat distributions, so also hold the log-probabilities to 1e-4: this catches a
        # preprocessing slip that an absolute 1e-4 on ~0.001 probabilities would let through.
        torch.testing.assert_close(probabilities.log(), expected.log(), atol=1e-4, rtol=0)
        assert [p.class_index for p in result.predictions] == expected.topk(5).indices.tolist()


def test_real_photo_as_jpeg_matches_reference(loaded, reference):
    image = Image.open(skimage_photo("astronaut.png")).convert("RGB")
    data = image_bytes(image, "JPEG", quality=90)
    decoded = decode_image(data, "astronaut.jpg")
    (ours,) = classify_images(loaded, [decoded.image])
    import io
    expected = reference(Image.open(io.BytesIO(data)).convert("RGB"))
    torch.testing.assert_close(torch.from_numpy(ours.probabilities).log(), expected.log(), atol=1e-4, rtol=0)


def test_photos_differ_so_the_fidelity_test_can_fail(loaded, photo_bytes):
    results = classify_images(loaded, [decode_image(d, n).image for n, d in photo_bytes.items()])
    first = results[0].probabilities
    assert any(abs(r.probabilities - first).max() > 1e-4 for r in results[1:])


def test_top_k_predictions_are_ranked_probabilities(loaded, photo_bytes):
    image = decode_image(photo_bytes["chelsea.png"], "chelsea.png").image
    (result,) = classify_images(loaded, [image], top_k=7)
    probabilities = [p.probability for p in result.predictions]
    assert [p.rank for p in result.predictions] == list(range(1, 8))
    assert probabilities == sorted(probabilities, reverse=True)
    assert abs(float(result.probabilities.sum()) - 1) < 1e-5
    for p in result.predictions:
        assert p.label == loaded.categories[p.class_index]
        assert p.probability == pytest.approx(float(result.probabilities[p.class_index]))


def test_batches_equal_single_images(loaded, photo_bytes):
    images = [decode_image(d, n).image for n, d in photo_bytes.items()]
    batched = classify_images(loaded, images, batch_size=4)
    for image, together in zip(images, batched):
        (alone,) = classify_images(loaded, [image], batch_size=1)
        torch.testing.assert_close(alone.probabilities, together.probabilities, atol=1e-6, rtol=1e-5)


def test_embeddings_are_the_pooled_features_before_the_classifier(loaded, photo_bytes):
    image = decode_image(photo_bytes["coffee.png"], "coffee.png").image
    (result,) = classify_images(loaded, [image])
    assert result.embedding.shape == (512,)
    logits = loaded.model.fc(torch.from_numpy(result.embedding).unsqueeze(0))
    torch.testing.assert_close(logits.softmax(1)[0], torch.from_numpy(result.probabilities), atol=1e-6, rtol=0)


def test_pooled_features_follow_torchvision_forward(loaded):
    batch = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        torch.testing.assert_close(loaded.model.fc(pooled_features(loaded.model, batch)), loaded.model(batch))


def test_preprocessing_is_recorded_from_the_weights_transforms():
    p = preprocessing_provenance()
    assert p["resize"] == [256] and p["crop"] == [224] and p["interpolation"] == "bilinear" and p["antialias"]
    assert p["mean"] == pytest.approx([0.485, 0.456, 0.406]) and p["std"] == pytest.approx([0.229, 0.224, 0.225])


def test_top_k_bounds(loaded):
    with pytest.raises(ValueError):
        classify_images(loaded, [Image.new("RGB", (10, 10))], top_k=0)


def test_real_photo_list_is_what_we_think():
    assert all(skimage_photo(n).exists() for n in REAL_PHOTOS)


def padded_reference(image: Image.Image) -> torch.Tensor:
    """Pad mode written out independently: fit into 224×224 on the mean colour, then the weights' normalisation."""
    from PIL import ImageOps
    from torchvision.transforms import functional as TF
    t = ResNet18_Weights.IMAGENET1K_V1.transforms()
    square = ImageOps.pad(image, (224, 224), method=Image.BILINEAR, color=tuple(round(255 * m) for m in t.mean))
    return TF.normalize(TF.convert_image_dtype(TF.pil_to_tensor(square), torch.float32), list(t.mean), list(t.std))


@pytest.mark.parametrize("crop_mode", ["center", "pad"])
def test_uint8_model_input_is_the_exact_first_half_of_preprocessing(crop_mode, photo_bytes):
    """Batch workers ship crops as uint8 model inputs; normalising them must give the very tensor the weights'
    own transform gives, bit for bit, or a distributed run would not be faithful."""
    from shelf.recognition.inputs import model_input, normalise
    reference = {"center": ResNet18_Weights.IMAGENET1K_V1.transforms(), "pad": padded_reference}[crop_mode]
    for name in ("chelsea.png", "rocket.jpg"):
        image = decode_image(photo_bytes[name], name).image.crop((10, 20, 200, 420))  # a tall crop
        inputs = model_input(image, crop_mode)
        assert inputs.shape == (224, 224, 3) and inputs.dtype.name == "uint8"
        assert torch.equal(torch.from_numpy(normalise(inputs[None])[0]), reference(image))


@pytest.mark.parametrize("size", [(300, 200), (200, 300), (256, 256), (257, 999), (1000, 257), (100, 150), (223, 80)])
def test_preprocessing_without_torchvision_is_torchvisions_bit_for_bit(size, photo_bytes):
    """model_input + normalise resize and crop with Pillow (no torchvision import at start-up): the same tensor as
    the weights' own transform at every shape — tall, wide, square, odd, and smaller than the crop."""
    from shelf.recognition.inputs import model_input, normalise
    image = decode_image(photo_bytes["coffee.png"], "coffee.png").image.resize(size, Image.BICUBIC)
    assert torch.equal(torch.from_numpy(normalise(model_input(image)[None])[0]),
                       ResNet18_Weights.IMAGENET1K_V1.transforms()(image))
