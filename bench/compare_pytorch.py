#!/usr/bin/env python3
"""Lumen against PyTorch + diffusers, one SD1.5 UNet step (CFG batch 2), in one run.

For each size: `lumen bench --preset sd15 --phases unet_step` in f32 and bf16,
then diffusers' UNet2DConditionModel (bench/pytorch_baseline/unet_step.py) in
f32 with the system allocator (PyTorch as installed) and with tcmalloc
preloaded (the allocator Lumen links). Prints a Markdown table of median
step times, ratios against PyTorch f32 (glibc) and against PyTorch f32
(tcmalloc), the achieved GFLOP/s as a share of the machine's rates that
`lumen bench` measured in the same process, and peak RSS.

    /usr/bin/python3 bench/compare_pytorch.py --diffusers-src bench/pytorch_baseline/vendor_tmp/src 256 512
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TCMALLOC = "/usr/lib/x86_64-linux-gnu/libtcmalloc.so.4"


def last_json(text):
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError("no JSON in output:\n" + text[-2000:])


def run(cmd, env=None):
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return done.stdout


def lumen(args, size, dtype):
    out = run([args.lumen, "--threads", str(args.threads), "bench", "--preset", "sd15", "--size", str(size),
               "--dtype", dtype, "--phases", "unet_step", "--repeats", str(args.repeats), "--json"])
    r = json.loads(out)
    u = r["unet_step"]
    m = r["machine"]
    return {"median_s": u["median_s"], "gflop": u["gflop"], "peak_rss_gb": r["peak_rss_bytes"] / 1e9,
            "gemm": m["gemm_" + dtype]["gflops"], "conv": m["conv3x3_" + dtype]["gflops"]}


def pytorch(args, size, dtype, allocator):
    env = dict(os.environ)
    if allocator == "tcmalloc":
        env["LD_PRELOAD"] = TCMALLOC
    out = run(["/usr/bin/python3", os.path.join(HERE, "pytorch_baseline", "unet_step.py"), "--diffusers-src",
               args.diffusers_src, "--size", str(size), "--dtype", dtype, "--threads", str(args.threads),
               "--repeats", str(args.repeats), "--json"], env)
    r = last_json(out)
    return {"median_s": r["median_s"], "peak_rss_gb": r["peak_rss_mib"] * 1.048576e-3}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sizes", type=int, nargs="+")
    ap.add_argument("--diffusers-src", required=True, help="folder holding diffusers v0.27.2's `diffusers` package")
    ap.add_argument("--lumen", default="build/lumen")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    print("| size | system | UNet step (median) | vs PyTorch f32 | vs PyTorch f32 + tcmalloc | GFLOP/s | share of machine | peak RSS |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for size in args.sizes:
        rows = [("Lumen f32", lumen(args, size, "f32")),
                ("PyTorch f32 (glibc malloc)", pytorch(args, size, "f32", "glibc")),
                ("PyTorch f32 + tcmalloc (LD_PRELOAD)", pytorch(args, size, "f32", "tcmalloc")),
                ("Lumen bf16", lumen(args, size, "bf16"))]
        gflop = rows[0][1]["gflop"]
        base, base_tc = rows[1][1]["median_s"], rows[2][1]["median_s"]
        for name, r in rows:
            rate = gflop / r["median_s"]
            share = ""
            if "gemm" in r:
                share = f"{100 * rate / r['conv']:.0f}% of conv, {100 * rate / r['gemm']:.0f}% of GEMM"
            print(f"| {size}² | {name} | {r['median_s']:.2f} s | {base / r['median_s']:.2f}× | "
                  f"{base_tc / r['median_s']:.2f}× | {rate:.0f} | {share} | {r['peak_rss_gb']:.2f} GB |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
