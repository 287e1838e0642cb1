"""The `tf` FVD profile's resize against TF1 `tf.compat.v1.image.resize_bilinear` itself (fixture made with
TensorFlow outside the repository; see tests/fixtures/tf_resize/README.md)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from avbench.metrics import video_preprocess as vp
from avbench.metrics.profiles import FVD_PROFILES

FIXTURE = Path(__file__).parent / "fixtures" / "tf_resize" / "fixture.npz"
NAMES = ["v64x64", "v96x128", "v37x50", "v240x232"]


@pytest.fixture(scope="module")
def fixture():
    with np.load(FIXTURE) as z:
        return {k: z[k] for k in z.files}


@pytest.mark.parametrize("name", NAMES)
def test_tf_profile_resize_matches_tf1_resize_bilinear(fixture, name):
    assert FVD_PROFILES["tf"].resize == "tf1_bilinear_squash" and FVD_PROFILES["tf"].resolution == 224
    video = fixture[f"{name}/input"]  # uint8 [1, T, H, W, 3]
    ours = vp.squash_tf1(torch.from_numpy(video), 224).permute(0, 2, 3, 4, 1).numpy()  # → [1, T, 224, 224, 3]
    rows, cols = fixture[f"{name}/rows"], fixture[f"{name}/cols"]
    np.testing.assert_allclose(ours[:, :, rows], fixture[f"{name}/out_rows"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(ours[:, :, :, cols], fixture[f"{name}/out_cols"], rtol=0, atol=1e-5)


def test_fixture_is_not_what_half_pixel_resizing_gives(fixture):
    # Guards the test itself: torch's half-pixel bilinear (what a naive port would use) misses the fixture.
    video = torch.from_numpy(fixture["v37x50/input"])
    x = video[0].permute(0, 3, 1, 2).float()
    naive = torch.nn.functional.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False)
    naive = (naive * (2.0 / 255.0) - 1.0).permute(0, 2, 3, 1).numpy()[None]
    rows = fixture["v37x50/rows"]
    assert np.abs(naive[:, :, rows] - fixture["v37x50/out_rows"]).max() > 1e-2
