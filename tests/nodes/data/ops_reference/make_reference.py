"""Regenerates ComfyUI's outputs for the latent/image/mask op cases (needs a ComfyUI checkout and its venv).

Not run by CI. Usage, from the repository root:

    COMFYUI_VENV_PYTHON tests/nodes/data/ops_reference/make_reference.py --comfyui PATH_TO_COMFYUI

It builds small seeded inputs, runs each case through ComfyUI's own node classes (imported from the
checkout, on CPU) and writes `cases.json` (the cases and non-tensor outputs) and `reference.safetensors`
(inputs as `in.*`, outputs as `out.<case>.<slot>[.field]`). tests/nodes/test_ops_reference.py replays the
cases through diffgraph's nodes and compares.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import types
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent
EXTRA_MODULES = (
    "comfy_extras.nodes_latent",
    "comfy_extras.nodes_mask",
    "comfy_extras.nodes_images",
    "comfy_extras.nodes_post_processing",
    "comfy_extras.nodes_primitive",
    "comfy_extras.nodes_string",
    "comfy_extras.nodes_compositing",
)


def make_inputs() -> dict[str, torch.Tensor]:
    """The seeded input tensors every case draws from."""
    g = torch.Generator().manual_seed(1234)
    colours = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.2, 0.4, 0.6], [1.0, 1.0, 1.0]])
    return {
        "lat_a": torch.randn(2, 4, 8, 8, generator=g),
        "lat_b": torch.randn(2, 4, 8, 8, generator=g),
        "lat_c": torch.randn(1, 4, 6, 10, generator=g),
        "lat_one": torch.randn(1, 4, 8, 8, generator=g),
        "lat_noise_mask": torch.rand(2, 1, 16, 16, generator=g),
        "img_a": torch.rand(2, 16, 16, 3, generator=g),
        "img_b": torch.rand(1, 12, 20, 3, generator=g),
        "img_rgba": torch.rand(1, 16, 16, 4, generator=g),
        "img_palette": colours[torch.randint(0, 4, (1, 16, 16), generator=g)],
        "mask_a": torch.rand(2, 16, 16, generator=g),
        "mask_b": torch.rand(1, 8, 12, generator=g),
        "mask_bin": (torch.rand(1, 16, 16, generator=g) > 0.7).float(),
        "img_tall": torch.rand(1, 18, 10, 3, generator=g),
    }


def L(name: str, batch_index: list[int] | None = None, noise_mask: str | None = None) -> dict[str, Any]:  # noqa: N802
    """A LATENT input spec."""
    spec: dict[str, Any] = {"latent": name}
    if batch_index is not None:
        spec["batch_index"] = batch_index
    if noise_mask is not None:
        spec["noise_mask"] = noise_mask
    return spec


def I(name: str) -> dict[str, str]:  # noqa: E743, N802
    """An IMAGE input spec."""
    return {"image": name}


def M(name: str) -> dict[str, str]:  # noqa: N802
    """A MASK input spec."""
    return {"mask": name}


def cases() -> list[dict[str, Any]]:
    """Every case: a name, a node id and its inputs (tensor inputs by spec)."""
    out: list[dict[str, Any]] = []

    def case(name: str, node: str, **inputs: Any) -> None:
        out.append({"name": name, "node": node, "inputs": inputs})

    for method in ("nearest-exact", "bilinear", "area", "bicubic", "bislerp"):
        case(
            f"LatentUpscale_{method}",
            "LatentUpscale",
            samples=L("lat_a"),
            upscale_method=method,
            width=96,
            height=80,
            crop="disabled",
        )
        case(
            f"LatentUpscale_{method}_center",
            "LatentUpscale",
            samples=L("lat_c"),
            upscale_method=method,
            width=64,
            height=64,
            crop="center",
        )
        case(
            f"LatentUpscaleBy_{method}",
            "LatentUpscaleBy",
            samples=L("lat_a"),
            upscale_method=method,
            scale_by=1.5,
        )
        case(
            f"LatentUpscaleBy_{method}_down",
            "LatentUpscaleBy",
            samples=L("lat_c"),
            upscale_method=method,
            scale_by=0.63,
        )
    case(
        "LatentUpscale_width0",
        "LatentUpscale",
        samples=L("lat_c"),
        upscale_method="bilinear",
        width=0,
        height=128,
        crop="disabled",
    )
    case(
        "LatentComposite_hard",
        "LatentComposite",
        samples_to=L("lat_a"),
        samples_from=L("lat_c"),
        x=16,
        y=24,
        feather=0,
    )
    case(
        "LatentComposite_feather",
        "LatentComposite",
        samples_to=L("lat_a"),
        samples_from=L("lat_one"),
        x=16,
        y=8,
        feather=16,
    )
    case(
        "LatentCompositeMasked_plain",
        "LatentCompositeMasked",
        destination=L("lat_a"),
        source=L("lat_c"),
        x=8,
        y=16,
        resize_source=False,
    )
    case(
        "LatentCompositeMasked_mask",
        "LatentCompositeMasked",
        destination=L("lat_a"),
        source=L("lat_one"),
        x=24,
        y=0,
        resize_source=False,
        mask=M("mask_a"),
    )
    case(
        "LatentCompositeMasked_resize",
        "LatentCompositeMasked",
        destination=L("lat_a"),
        source=L("lat_c"),
        x=0,
        y=0,
        resize_source=True,
        mask=M("mask_b"),
    )
    case("LatentBlend_same", "LatentBlend", samples1=L("lat_a"), samples2=L("lat_b"), blend_factor=0.3)
    case("LatentBlend_resize", "LatentBlend", samples1=L("lat_a"), samples2=L("lat_c"), blend_factor=0.7)
    case("LatentAdd", "LatentAdd", samples1=L("lat_a"), samples2=L("lat_c"))
    case("LatentSubtract", "LatentSubtract", samples1=L("lat_a"), samples2=L("lat_b"))
    case("LatentMultiply", "LatentMultiply", samples=L("lat_a"), multiplier=-1.7)
    case("LatentInterpolate", "LatentInterpolate", samples1=L("lat_one"), samples2=L("lat_c"), ratio=0.35)
    case("LatentBatch", "LatentBatch", samples1=L("lat_a", batch_index=[4, 5]), samples2=L("lat_c"))
    case(
        "LatentFromBatch",
        "LatentFromBatch",
        samples=L("lat_a", noise_mask="lat_noise_mask"),
        batch_index=1,
        length=3,
    )
    case(
        "LatentFromBatch_indexed",
        "LatentFromBatch",
        samples=L("lat_a", batch_index=[7, 9]),
        batch_index=0,
        length=1,
    )
    case("RepeatLatentBatch", "RepeatLatentBatch", samples=L("lat_a", [2, 3], "lat_noise_mask"), amount=3)
    case(
        "LatentBatchSeedBehavior_fixed",
        "LatentBatchSeedBehavior",
        samples=L("lat_a", [6, 8]),
        seed_behavior="fixed",
    )
    case(
        "LatentBatchSeedBehavior_random",
        "LatentBatchSeedBehavior",
        samples=L("lat_a", [6, 8]),
        seed_behavior="random",
    )
    case("LatentCrop", "LatentCrop", samples=L("lat_c"), width=64, height=64, x=40, y=8)
    for method in ("x-axis: vertically", "y-axis: horizontally"):
        case(f"LatentFlip_{method[0]}", "LatentFlip", samples=L("lat_c"), flip_method=method)
    for rotation in ("none", "90 degrees", "180 degrees", "270 degrees"):
        case(f"LatentRotate_{rotation.split()[0]}", "LatentRotate", samples=L("lat_c"), rotation=rotation)
    case("SetLatentNoiseMask", "SetLatentNoiseMask", samples=L("lat_a"), mask=M("mask_a"))

    for method in ("nearest-exact", "bilinear", "area", "bicubic", "lanczos"):
        case(
            f"ImageScale_{method}",
            "ImageScale",
            image=I("img_a"),
            upscale_method=method,
            width=24,
            height=10,
            crop="center",
        )
        case(f"ImageScaleBy_{method}", "ImageScaleBy", image=I("img_b"), upscale_method=method, scale_by=1.3)
    # The smallest allowed size (0.01 MP) is already ~10k pixels: two methods keep the file small.
    for method in ("area", "lanczos"):
        case(
            f"ImageScaleToTotalPixels_{method}",
            "ImageScaleToTotalPixels",
            image=I("img_b"),
            upscale_method=method,
            megapixels=0.01,
        )
    for method, image, largest in (
        ("area", "img_b", 13),
        ("lanczos", "img_tall", 25),
        ("bilinear", "img_b", 31),
        ("nearest-exact", "img_tall", 7),
        ("bicubic", "img_a", 10),
    ):
        case(
            f"ImageScaleToMaxDimension_{method}",
            "ImageScaleToMaxDimension",
            image=I(image),
            upscale_method=method,
            largest_size=largest,
        )
    case(
        "ImageScale_height0",
        "ImageScale",
        image=I("img_b"),
        upscale_method="bilinear",
        width=30,
        height=0,
        crop="disabled",
    )
    case("ImageInvert", "ImageInvert", image=I("img_a"))
    case("ImageBatch", "ImageBatch", image1=I("img_a"), image2=I("img_b"))
    case("ImageFromBatch", "ImageFromBatch", image=I("img_a"), batch_index=1, length=4)
    case("RepeatImageBatch", "RepeatImageBatch", image=I("img_a"), amount=2)
    case("ImageCrop", "ImageCrop", image=I("img_b"), width=8, height=20, x=15, y=3)
    case(
        "ImagePadForOutpaint",
        "ImagePadForOutpaint",
        image=I("img_a"),
        left=8,
        top=0,
        right=16,
        bottom=8,
        feathering=5,
    )
    case(
        "ImagePadForOutpaint_nofeather",
        "ImagePadForOutpaint",
        image=I("img_b"),
        left=0,
        top=8,
        right=0,
        bottom=0,
        feathering=40,
    )
    case(
        "ImageCompositeMasked",
        "ImageCompositeMasked",
        destination=I("img_a"),
        source=I("img_b"),
        x=5,
        y=7,
        resize_source=False,
        mask=M("mask_b"),
    )
    case(
        "ImageCompositeMasked_alpha",
        "ImageCompositeMasked",
        destination=I("img_a"),
        source=I("img_rgba"),
        x=3,
        y=2,
        resize_source=True,
    )
    for mode in ("normal", "multiply", "screen", "overlay", "soft_light", "difference"):
        case(
            f"ImageBlend_{mode}",
            "ImageBlend",
            image1=I("img_a"),
            image2=I("img_b"),
            blend_factor=0.6,
            blend_mode=mode,
        )
    case("ImageBlur", "ImageBlur", image=I("img_a"), blur_radius=3, sigma=0.8)
    case("ImageSharpen", "ImageSharpen", image=I("img_a"), sharpen_radius=2, sigma=1.5, alpha=0.7)
    for dither in ("none", "floyd-steinberg", "bayer-2", "bayer-4"):
        case(f"ImageQuantize_{dither}", "ImageQuantize", image=I("img_a"), colors=6, dither=dither)
    case("EmptyImage", "EmptyImage", width=7, height=5, batch_size=2, color=0x3366CC)
    for direction in ("right", "down", "left", "up"):
        case(
            f"ImageStitch_{direction}",
            "ImageStitch",
            image1=I("img_a"),
            direction=direction,
            match_image_size=True,
            spacing_width=2,
            spacing_color="red",
            image2=I("img_b"),
        )
        case(
            f"ImageStitch_{direction}_pad",
            "ImageStitch",
            image1=I("img_b"),
            direction=direction,
            match_image_size=False,
            spacing_width=3,
            spacing_color="white",
            image2=I("img_a"),
        )

    for dim in ("x", "-x", "y", "-y"):
        case(f"LatentConcat_{dim}", "LatentConcat", samples1=L("lat_a"), samples2=L("lat_one"), dim=dim)
    case("LatentCut_x", "LatentCut", samples=L("lat_c"), dim="x", index=3, amount=20)
    case("LatentCut_y_negative", "LatentCut", samples=L("lat_c"), dim="y", index=-4, amount=2)
    for method in ("x-axis: vertically", "y-axis: horizontally"):
        case(f"ImageFlip_{method[0]}", "ImageFlip", image=I("img_b"), flip_method=method)
    for rotation in ("90 degrees", "270 degrees"):
        case(f"ImageRotate_{rotation.split()[0]}", "ImageRotate", image=I("img_b"), rotation=rotation)
    for method in ("area", "lanczos", "bicubic"):
        case(
            f"ResizeAndPadImage_{method}",
            "ResizeAndPadImage",
            image=I("img_b"),
            target_width=16,
            target_height=16,
            padding_color="black",
            interpolation=method,
        )
    case("GetImageSize", "GetImageSize", image=I("img_b"))
    case("JoinImageWithAlpha", "JoinImageWithAlpha", image=I("img_a"), alpha=M("mask_b"))

    case("ImageToMask", "ImageToMask", image=I("img_a"), channel="green")
    case("MaskToImage", "MaskToImage", mask=M("mask_a"))
    case("ImageColorToMask", "ImageColorToMask", image=I("img_palette"), color=0x336699)
    case("SolidMask", "SolidMask", value=0.25, width=9, height=4)
    case("InvertMask", "InvertMask", mask=M("mask_a"))
    case("CropMask", "CropMask", mask=M("mask_a"), x=3, y=5, width=10, height=20)
    for op in ("multiply", "add", "subtract", "and", "or", "xor"):
        case(
            f"MaskComposite_{op}",
            "MaskComposite",
            destination=M("mask_a"),
            source=M("mask_b"),
            x=6,
            y=10,
            operation=op,
        )
    case("FeatherMask", "FeatherMask", mask=M("mask_a"), left=3, top=2, right=4, bottom=5)
    for expand in (2, -1):
        for tapered in (True, False):
            case(
                f"GrowMask_{expand}_{tapered}",
                "GrowMask",
                mask=M("mask_bin" if expand > 0 else "mask_a"),
                expand=expand,
                tapered_corners=tapered,
            )
    case("ThresholdMask", "ThresholdMask", mask=M("mask_a"), value=0.4)
    return out


def comfy_value(spec: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """A case input as ComfyUI's node receives it."""
    if not isinstance(spec, dict):
        return spec
    if "latent" in spec:
        latent: dict[str, Any] = {"samples": tensors[spec["latent"]].clone()}
        if "batch_index" in spec:
            latent["batch_index"] = list(spec["batch_index"])
        if "noise_mask" in spec:
            latent["noise_mask"] = tensors[spec["noise_mask"]].clone()
        return latent
    return tensors[spec.get("image") or spec["mask"]].clone()


def run_comfy(node_id: str, kwargs: dict[str, Any], mappings: dict[str, Any]) -> tuple[Any, ...]:
    """Call the ComfyUI node's function (V1 classes) or execute (V3 classes); the output tuple."""
    cls = mappings[node_id]
    if hasattr(cls, "FUNCTION"):
        return tuple(getattr(cls(), cls.FUNCTION)(**kwargs))
    return tuple(cls.execute(**kwargs).args)


def main() -> None:
    """Run every case through ComfyUI and write the fixtures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--comfyui", required=True, type=Path, help="a ComfyUI checkout (0.3.64 was used)")
    args = parser.parse_args()
    sys.path.insert(0, str(args.comfyui))
    torch.set_num_threads(1)
    # ComfyUI picks its device at import: force the CPU before anything imports model_management.
    importlib.import_module("comfy.cli_args").args.cpu = True
    # nodes_images imports the web server only for a progress message none of these cases sends.
    server = types.ModuleType("server")
    server.PromptServer = type("PromptServer", (), {"instance": None})  # type: ignore[attr-defined]
    sys.modules.setdefault("server", server)
    mappings: dict[str, Any] = dict(importlib.import_module("nodes").NODE_CLASS_MAPPINGS)
    for name in EXTRA_MODULES:
        module = importlib.import_module(name)
        if hasattr(module, "NODE_CLASS_MAPPINGS"):
            mappings.update(module.NODE_CLASS_MAPPINGS)
        else:
            extension = module.comfy_entrypoint().__await__()
            try:
                extension.send(None)
            except StopIteration as done:
                nodes = done.value.get_node_list().__await__()
                try:
                    nodes.send(None)
                except StopIteration as listed:
                    mappings.update({cls.define_schema().node_id: cls for cls in listed.value})
    tensors = make_inputs()
    stored = {f"in.{k}": v.contiguous() for k, v in tensors.items()}
    records = []
    for entry in cases():
        kwargs = {k: comfy_value(v, tensors) for k, v in entry["inputs"].items()}
        outputs = run_comfy(entry["node"], kwargs, mappings)
        extras: list[Any] = []
        for slot, value in enumerate(outputs):
            key = f"out.{entry['name']}.{slot}"
            if isinstance(value, dict):
                stored[f"{key}.samples"] = value["samples"].contiguous()
                if "noise_mask" in value:
                    stored[f"{key}.noise_mask"] = value["noise_mask"].contiguous()
                extras.append({"batch_index": value.get("batch_index")})
            elif isinstance(value, torch.Tensor):
                stored[key] = value.contiguous().float()
                extras.append(None)
            else:
                extras.append({"value": value})
        records.append({**entry, "outputs": extras})
    save_file(stored, str(HERE / "reference.safetensors"))
    meta = {"comfyui": "0.3.64", "torch": torch.__version__, "cases": records}
    (HERE / "cases.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"{len(records)} cases written")


if __name__ == "__main__":
    main()
