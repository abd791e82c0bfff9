import numpy as np
import torch

from dekr.data.normalize import normalize_batch, normalize_image


def _imagenet_reference(img: np.ndarray) -> np.ndarray:
    return ((img / 255.0 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]).transpose(2, 0, 1)


def test_normalize_image_is_imagenet():
    img = np.random.default_rng(0).integers(0, 256, (8, 9, 3)).astype(np.uint8)
    got = normalize_image(img)
    np.testing.assert_allclose(got, _imagenet_reference(img), atol=1e-6)
    assert got.dtype == np.float32 and got.shape == (3, 8, 9)


def test_numpy_and_torch_paths_agree_on_every_pixel_value():
    # The per-sample (numpy lookup table) and per-batch (torch, on the device) paths must feed the
    # network the same values, or training and inference would see different inputs.
    img = np.stack(np.meshgrid(np.arange(256), np.arange(3), indexing="ij"), -1)[:, :, :1].repeat(3, -1)
    img = img.astype(np.uint8)  # (256, 3, 3): every level in every channel
    from_numpy = normalize_image(img)
    from_torch = normalize_batch(torch.from_numpy(img).permute(2, 0, 1)[None])[0].numpy()
    assert from_torch.dtype == np.float32
    np.testing.assert_allclose(from_torch, from_numpy, atol=1e-6, rtol=0)
    np.testing.assert_allclose(from_torch, _imagenet_reference(img), atol=1e-6)
