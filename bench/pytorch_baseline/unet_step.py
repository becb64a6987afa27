#!/usr/bin/env python3
"""Time ONE UNet step of Hugging Face diffusers' UNet2DConditionModel (SD1.5 config).

Reference point "PyTorch + diffusers" for Lumen's C++ UNet benchmark. Random
weights (default init, seed 0), nothing downloaded. Run with Debian's python
(/usr/bin/python3, python3-torch 1.13) -- see README.md in this folder for how
to obtain the diffusers source passed as --diffusers-src.

    /usr/bin/python3 bench/pytorch_baseline/unet_step.py \
        --diffusers-src bench/pytorch_baseline/vendor_tmp/src \
        --size 512 --dtype f32 --threads 1 --repeats 3 --json
"""
import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# Stable Diffusion 1.5 UNet config (runwayml/stable-diffusion-v1-5, unet/config.json).
SD15_UNET_CONFIG = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    center_input_sample=False,
    flip_sin_to_cos=True,
    freq_shift=0,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    downsample_padding=1,
    mid_block_scale_factor=1,
    act_fn="silu",
    norm_num_groups=32,
    norm_eps=1e-5,
    cross_attention_dim=768,
    attention_head_dim=8,
)
SD15_UNET_PARAMS = 859_520_964


def rss_now_mib():
    """Current resident set size (VmRSS) in MiB, or None if /proc is unavailable."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def peak_rss_mib():
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return r / (1024.0 * 1024.0) if sys.platform == "darwin" else r / 1024.0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--diffusers-src", required=True,
                    help="directory that contains the 'diffusers' package (e.g. <export>/src)")
    ap.add_argument("--size", type=int, default=512, help="image size in pixels; latent is size/8 (default 512)")
    ap.add_argument("--dtype", choices=("f32", "bf16"), default="f32")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch.set_num_threads (default 1; intra-op pool size, interop is set to 1)")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls after one warm-up call (default 3)")
    ap.add_argument("--json", action="store_true", help="also print one JSON object on the last line")
    args = ap.parse_args()

    if args.size % 8 != 0 or args.size < 64:
        ap.error("--size must be a multiple of 8 and >= 64 (UNet downsamples the latent 3x)")
    if args.repeats < 1:
        ap.error("--repeats must be >= 1")
    src = os.path.abspath(args.diffusers_src)
    if not os.path.isfile(os.path.join(src, "diffusers", "__init__.py")):
        ap.error(f"--diffusers-src: no diffusers/__init__.py under {src}")

    # Shims (huggingface_hub, safetensors stand-ins) go at the END of sys.path, so a
    # really installed package always wins; the diffusers source goes first.
    sys.path.append(os.path.join(HERE, "shims"))
    sys.path.insert(0, src)

    import torch
    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass

    t0 = time.perf_counter()
    # Import the model module directly: pulls in diffusers.models/loaders/utils, not pipelines.
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
    import diffusers
    import_s = time.perf_counter() - t0

    dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[args.dtype]

    t0 = time.perf_counter()
    torch.manual_seed(0)
    model = UNet2DConditionModel(**SD15_UNET_CONFIG)  # built in f32 (default init)
    model.eval()
    if dtype != torch.float32:
        model = model.to(dtype)
    build_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in model.parameters())
    if n_params != SD15_UNET_PARAMS:
        print(f"WARNING: parameter count {n_params} != SD1.5 UNet {SD15_UNET_PARAMS}", file=sys.stderr)
    proc_names = sorted({type(p).__name__ for p in model.attn_processors.values()})
    rss_after_build = rss_now_mib()

    lat = args.size // 8
    g = torch.Generator().manual_seed(0)
    sample = torch.randn(2, 4, lat, lat, generator=g).to(dtype)
    ehs = torch.randn(2, 77, 768, generator=g).to(dtype)
    timestep = torch.tensor(500, dtype=torch.long)

    times = []
    with torch.no_grad():
        t0 = time.perf_counter()
        out = model(sample, timestep, encoder_hidden_states=ehs, return_dict=False)[0]
        warmup_s = time.perf_counter() - t0
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            out = model(sample, timestep, encoder_hidden_states=ehs, return_dict=False)[0]
            times.append(time.perf_counter() - t0)

    assert tuple(out.shape) == (2, 4, lat, lat) and out.dtype == dtype, (out.shape, out.dtype)
    finite = bool(torch.isfinite(out.float()).all())

    res = {
        "engine": "pytorch+diffusers",
        "size": args.size,
        "latent": [2, 4, lat, lat],
        "dtype": args.dtype,
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "min_s": min(times),
        "median_s": statistics.median(times),
        "times_s": times,
        "warmup_s": warmup_s,
        "build_s": build_s,
        "import_s": import_s,
        "params": n_params,
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "rss_after_build_mib": None if rss_after_build is None else round(rss_after_build, 1),
        "output_finite": finite,
        "output_abs_mean": float(out.float().abs().mean()),
        "torch_version": torch.__version__,
        "diffusers_version": diffusers.__version__,
        "attn_processor": ",".join(proc_names),
        "python": platform.python_version(),
    }
    print(f"pytorch+diffusers UNet step: size={args.size} (latent 2x4x{lat}x{lat}) dtype={args.dtype} "
          f"threads={res['threads']}  min {res['min_s']:.3f} s  median {res['median_s']:.3f} s "
          f"(n={args.repeats}, warm-up {warmup_s:.3f} s)  params={n_params:,}  "
          f"peak RSS {res['peak_rss_mib']:.0f} MiB  torch {res['torch_version']}  "
          f"diffusers {res['diffusers_version']}  attn={res['attn_processor']}"
          + ("" if finite else "  OUTPUT NOT FINITE"))
    if args.json:
        print(json.dumps(res))
    return 0 if finite and n_params == SD15_UNET_PARAMS else 1


if __name__ == "__main__":
    sys.exit(main())
