"""The images a widget steps through, each with its name in the cache and its model tensor.

An image set in place of another gets a new name (token), so results computed for the old one
are never served for it; each tensor is prepared once, on first use. Every image must give the
model input of one size: a list of mixed sizes is refused at once, naming the image that differs.
One size is what the brush, the patch, the mask and their controls are built for; letting it change
with the index would make each of them per-image state that a half-done switch could leave
behind, while a model needs one size anyway in nearly every case (a preprocess resizes).
"""

from __future__ import annotations

from typing import Any

from .arguments import prepare_image


class ImageList:
    """``images`` (one or a list) for ``explainer``: ``token(i)``, ``tensor(i)``, ``replace``."""

    def __init__(self, explainer: Any, images: Any):
        self.explainer = explainer
        self.items = list(images) if isinstance(images, (list, tuple)) else [images]
        if not self.items:
            raise ValueError("image: the list of images is empty")
        self.tokens = list(range(len(self.items)))
        self._next_token = len(self.items)
        self._tensors: dict[int, Any] = {}  # token -> the model-ready (1, C, H, W) tensor
        self._checked: tuple[Any, Any] | None = None  # (image, tensor) of the last check
        shape = tuple(self.tensor(0).shape[-2:])
        for index in range(1, len(self.items)):  # prepared to be checked, again when shown
            other = tuple(prepare_image(explainer, self.items[index]).shape[-2:])
            if other != shape:
                raise ValueError(
                    f"image: every image must give a model input of one size; image {index} gives "
                    f"{other} (H, W), image 0 gives {shape} — resize them, or give the Explainer a "
                    "preprocess that does (e.g. torchvision's transforms.Resize((224, 224)))"
                )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Any:
        return self.items[index]

    def token(self, index: int) -> int:
        return self.tokens[index]

    def tensor(self, index: int):
        """The model-ready tensor of image ``index`` (prepared once; raises for an image the
        engine cannot take)."""
        token = self.tokens[index]
        if token not in self._tensors:
            self._tensors[token] = prepare_image(self.explainer, self.items[index])
        return self._tensors[token]

    def check(self, image: Any, shape: tuple[int, ...]) -> Any:
        """``image``, if the engine takes it and its model input is ``shape`` (H, W)."""
        x = prepare_image(self.explainer, image)
        if tuple(x.shape[-2:]) != shape:
            raise ValueError(f"image: the model input must stay {shape} (H, W); got {tuple(x.shape[-2:])}")
        self._checked = (image, x)
        return image

    def release(self) -> None:
        """Drop the prepared tensors (they are prepared again if used)."""
        self._tensors.clear()
        self._checked = None

    def replace(self, index: int, image: Any) -> None:
        """Put ``image`` at ``index`` under a new token (its tensor from ``check`` when it was the
        image checked last)."""
        checked, x = self._checked or (None, None)
        self._checked = None
        token, self._next_token = self._next_token, self._next_token + 1
        self._tensors.pop(self.tokens[index], None)
        self.tokens[index], self.items[index] = token, image
        self._tensors[token] = x if checked is image else prepare_image(self.explainer, image)
