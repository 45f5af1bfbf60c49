"""Edge types of the stub pack: a boxed number, and one box per ComfyUI type the stubs pass around."""

from __future__ import annotations

from typing import Any, ClassVar

from engine import EdgeType


class Number(EdgeType):
    """NUMBER: a boxed float travelling between stub nodes."""

    io_type: ClassVar[str] = "NUMBER"

    def __init__(self, value: float):
        self.value = value

    def nbytes(self) -> int:
        return 8


class Box(EdgeType):
    """A value travelling between stubs; io_type set per subclass."""

    def __init__(self, value: Any = None):
        self.value = value


class StubModel(Box):
    io_type: ClassVar[str] = "MODEL"


class StubClip(Box):
    io_type: ClassVar[str] = "CLIP"


class StubVae(Box):
    io_type: ClassVar[str] = "VAE"


class StubCond(Box):
    io_type: ClassVar[str] = "CONDITIONING"


class StubLatent(Box):
    io_type: ClassVar[str] = "LATENT"


class StubImage(Box):
    """IMAGE: for the server stubs a PIL RGB image, elsewhere any value."""

    io_type: ClassVar[str] = "IMAGE"

    def nbytes(self) -> int:
        size = getattr(self.value, "size", None)
        return size[0] * size[1] * 3 if isinstance(size, tuple) else 0


class StubMask(Box):
    io_type: ClassVar[str] = "MASK"
