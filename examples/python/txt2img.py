#!/usr/bin/env python3
"""Lumen from Python through ctypes alone: the C API (lumen.h) needs no
binding code. Generates one image with the embedded default model (or -m
MODEL) and writes it as a PNG with its parameters text.

    python3 txt2img.py [--lib PATH/liblumen.so] [-m MODEL] "PROMPT" OUT.png
"""
import argparse
import ctypes
import sys


class Image(ctypes.Structure):
    _fields_ = [("width", ctypes.c_uint32), ("height", ctypes.c_uint32),
                ("pixels", ctypes.POINTER(ctypes.c_uint8)), ("seed", ctypes.c_uint64),
                ("parameters", ctypes.c_char_p)]


class Images(ctypes.Structure):
    _fields_ = [("count", ctypes.c_size_t), ("images", ctypes.POINTER(Image))]


class ContextParams(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_uint32), ("device", ctypes.c_char_p),
                ("dtype", ctypes.c_int), ("threads", ctypes.c_int)]


PROGRESS = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p)


# The API-1 layout: a newer library reads only the fields a caller declares
# (struct_size), so this script keeps working as the struct grows.
class GenerationParams(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_uint32), ("prompt", ctypes.c_char_p),
                ("negative_prompt", ctypes.c_char_p), ("sampler", ctypes.c_char_p),
                ("steps", ctypes.c_int), ("cfg_scale", ctypes.c_float), ("guidance_rescale", ctypes.c_float),
                ("width", ctypes.c_int), ("height", ctypes.c_int), ("seed", ctypes.c_uint64),
                ("batch_size", ctypes.c_int), ("init_image", ctypes.POINTER(Image)),
                ("mask", ctypes.POINTER(Image)), ("strength", ctypes.c_float),
                ("progress", PROGRESS), ("user_data", ctypes.c_void_p)]


def load(path):
    lib = ctypes.CDLL(path)
    lib.lumen_version.restype = ctypes.c_char_p
    lib.lumen_last_error.restype = ctypes.c_char_p
    lib.lumen_context_params_init.argtypes = [ctypes.POINTER(ContextParams), ctypes.c_size_t]
    lib.lumen_context_create.argtypes = [ctypes.c_char_p, ctypes.POINTER(ContextParams), ctypes.POINTER(ctypes.c_void_p)]
    lib.lumen_context_free.argtypes = [ctypes.c_void_p]
    lib.lumen_generation_params_init.argtypes = [ctypes.POINTER(GenerationParams), ctypes.c_size_t]
    lib.lumen_generate.argtypes = [ctypes.c_void_p, ctypes.POINTER(GenerationParams),
                                   ctypes.POINTER(ctypes.POINTER(Images))]
    lib.lumen_image_write_png.argtypes = [ctypes.POINTER(Image), ctypes.c_char_p, ctypes.c_int]
    lib.lumen_images_free.argtypes = [ctypes.POINTER(Images)]
    return lib


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", default="liblumen.so")
    ap.add_argument("-m", "--model", default=None)
    ap.add_argument("prompt")
    ap.add_argument("out")
    a = ap.parse_args()
    lib = load(a.lib)
    print("Lumen", lib.lumen_version().decode(), file=sys.stderr)

    cp = ContextParams()
    lib.lumen_context_params_init(ctypes.byref(cp), ctypes.sizeof(cp))
    cp.threads = 1
    ctx = ctypes.c_void_p()
    if lib.lumen_context_create(a.model.encode() if a.model else None, ctypes.byref(cp), ctypes.byref(ctx)) != 0:
        sys.exit("error: " + lib.lumen_last_error().decode())
    try:
        steps_seen = []

        @PROGRESS
        def progress(step, total, _user):
            steps_seen.append(step)
            return 0

        gp = GenerationParams()
        lib.lumen_generation_params_init(ctypes.byref(gp), ctypes.sizeof(gp))
        gp.prompt = a.prompt.encode()
        gp.seed = 1000
        gp.progress = progress
        images = ctypes.POINTER(Images)()
        if lib.lumen_generate(ctx, ctypes.byref(gp), ctypes.byref(images)) != 0:
            sys.exit("error: " + lib.lumen_last_error().decode())
        try:
            image = images.contents.images[0]
            if lib.lumen_image_write_png(ctypes.byref(image), a.out.encode(), 0) != 0:
                sys.exit("error: " + lib.lumen_last_error().decode())
            print(f"{a.out} ({image.width}x{image.height}, {len(steps_seen)} steps)")
            print(image.parameters.decode())
        finally:
            lib.lumen_images_free(images)
    finally:
        lib.lumen_context_free(ctx)


if __name__ == "__main__":
    main()
