#!/usr/bin/python3
"""Writes the generated seed inputs of fuzz/corpus (run from fuzz/: python3 corpus/make_seeds.py).

Needs Debian's python3-pil for the images. The keymap seeds come from the default
model converted to a single file:
    build/lumen convert assets/default-model -o /tmp/m.safetensors
    python3 corpus/make_seeds.py /tmp/m.safetensors
"""
import json
import struct
import sys

from PIL import Image, PngImagePlugin


def safetensors(name, header, data):
    h = json.dumps(header, separators=(',', ':')).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    open(f'corpus/safetensors/{name}', 'wb').write(struct.pack('<Q', len(h)) + h + data)


safetensors('f32_with_metadata', {"__metadata__": {"format": "pt", "lumen_config": "{\"unet\":{}}"},
                                  "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b'\x00' * 8)
safetensors('bf16_matrix', {"w": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]},
                            "b": {"dtype": "F16", "shape": [1], "data_offsets": [8, 10]}}, b'\x01' * 10)
safetensors('empty_tensor', {"v_pred": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}}, b'')
safetensors('overlap', {"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
                        "b": {"dtype": "U8", "shape": [4], "data_offsets": [2, 6]}}, b'\x00' * 6)
open('corpus/safetensors/short', 'wb').write(b'\x10\x00\x00\x00\x00\x00\x00\x00{"a":')

prompts = ["a red circle", "a (red:1.3) circle, [blue] square BREAK the background is white",
           "\\(escaped\\) \\[x\\] \\\\ back", "((((deep)))) [[[[shallow]]]] (a:-0.5) (b:1e3)",
           "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).", "xBREAK BREAK BREAKy :: )) ]]",
           "naïve café — “quotes” &amp; &lt;tags&gt; 🐱 日本語 Ǆ ﬁ", "   many    spaces\t\ttabs\nnewline  "]
for i, p in enumerate(prompts):
    for d in ('prompt', 'tokenizer'):
        open(f'corpus/{d}/seed{i}', 'w').write(p)

im = Image.new('RGB', (16, 12), (250, 250, 250))
for x in range(4, 10):
    for y in range(3, 9):
        im.putpixel((x, y), (220, 30, 30))
info = PngImagePlugin.PngInfo()
info.add_text('parameters', 'a red square\nSteps: 1, Sampler: DDIM, Size: 16x12')
im.save('corpus/png/with_text.png', pnginfo=info)
im.convert('L').save('corpus/png/grey.png')
im.convert('P').save('corpus/png/palette.png')
im.convert('RGBA').save('corpus/png/rgba.png')
im.save('corpus/png/photo.jpg', quality=50)
im.save('corpus/png/bitmap.bmp')
im.save('corpus/png/anim.gif')

if len(sys.argv) > 1:
    with open(sys.argv[1], 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        header = json.loads(f.read(n))
    lines = [f"{k} {' '.join(map(str, v['shape']))}" for k, v in sorted(header.items()) if k != '__metadata__']
    open('corpus/keymap/default_model_ldm', 'w').write('\n'.join(lines) + '\n')
    unet = [l for l in lines if l.startswith('model.diffusion_model.')]
    open('corpus/keymap/unet_only', 'w').write('\n'.join(unet) + '\n')
    vae = [l for l in lines if l.startswith('first_stage_model.')]
    te = [l.replace('cond_stage_model.transformer.', 'conditioner.embedders.0.transformer.')
          for l in lines if l.startswith('cond_stage_model.')]
    open('corpus/keymap/sgm_style', 'w').write('\n'.join(unet[:60] + vae[:40] + te[:40]) + '\n')
