"""The notebook cells the browser tests open."""

import numpy as np

H, W = 64, 96
HEAT = np.array([[0.0, 0.25, 0.5], [0.75, 1.0, 0.1]], np.float32)

# A HeatmapCanvas alone, on a synthetic picture and a 2×3 map.
CANVAS_CELL = f"""
import numpy as np
from nbexplain.widgets.canvas import HeatmapCanvas
H, W = {H}, {W}
yy, xx = np.mgrid[0:H, 0:W]
img = np.stack([xx * 255 // (W - 1), yy * 255 // (H - 1), np.full_like(xx, 80)], -1).astype(np.uint8)
heat = np.array({HEAT.tolist()}, np.float32)
canvas = HeatmapCanvas(img, heat, brush_size=3)
canvas
"""

# The Explorer on the embedded model (offline weights) and a bundled photo.
EXPLORER_CELL = """
import nbexplain as nbx
explainer = nbx.Explainer.pretrained(device="cpu")
explorer = nbx.Explorer(explainer, nbx.samples.load("cat"))
explorer
"""

# The Explorer on a small timm ViT (random weights, 64×64 input: 3 blocks over a 4×4 patch grid).
VIT_EXPLORER_CELL = """
import numpy as np, torch, timm
import nbexplain as nbx
torch.manual_seed(0)
vit = timm.models.vision_transformer.VisionTransformer(
    img_size=64, patch_size=16, embed_dim=32, depth=3, num_heads=2, num_classes=10).eval()
cat = torch.tensor(np.asarray(nbx.samples.load("cat").resize((64, 64)))).permute(2, 0, 1).float() / 255
explorer = nbx.Explorer(vit, cat, labels=[f"class {i}" for i in range(10)])
explorer
"""


# A signed map at the picture's resolution, on the scale (-2, 2): positive on the left, zero in
# the middle band, negative on the right, with one value (-3) beyond the scale's end.
SIGNED_SCALE = (-2.0, 2.0)
SIGNED_CODE = f"""
signed = np.zeros((H, W), np.float32)
signed[:, :32] = np.linspace(0.2, 2.0, 32)[None, :]
signed[:, 64:] = -np.linspace(0.2, 2.0, 32)[None, :]
signed[40, 90] = -3.0
canvas.set_heatmap(signed, signed=True, scale={SIGNED_SCALE}, unit="logit share",
                   caption="tabby (class 281) · integrated_gradients")
"""


def signed_map() -> np.ndarray:
    signed = np.zeros((H, W), np.float32)
    signed[:, :32] = np.linspace(0.2, 2.0, 32)[None, :]
    signed[:, 64:] = -np.linspace(0.2, 2.0, 32)[None, :]
    signed[40, 90] = -3.0
    return signed


def picture() -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    return np.stack([xx * 255 // (W - 1), yy * 255 // (H - 1), np.full_like(xx, 80)], -1).astype(np.uint8)
