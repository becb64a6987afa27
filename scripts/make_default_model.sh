#!/usr/bin/env bash
# Trains the embedded default model from its recipes and stores it in
# assets/default-model (a float16 diffusers folder). Resumable: rerun after an
# interruption and each stage continues from its last checkpoint.
#   scripts/make_default_model.sh
# Stages (configs/): shapes-vae (VAE), shapes-default (text encoder + UNet on
# that VAE's latents), shapes-default-left (the same trained on, also shown the
# held-out captions without their size word), shapes-vae-decoder (the VAE's decoder refined; the
# encoder and the latents stay as they were). The zero-SNR experiment's other
# arm, shapes-zsnr-flawed, is not part of the model (docs/zero-snr.md).
set -euo pipefail
cd "$(dirname "$0")/.."
lumen=${LUMEN:-build/lumen}
stage() {  # recipe, run folder
  if [[ -f "$2/final/DONE" ]]; then echo "$1: done ($2/final)"; return; fi
  if [[ -d "$2" ]]; then "$lumen" train "$1" --resume; else "$lumen" train "$1"; fi
}
stage configs/shapes-vae.yaml runs/shapes-vae
stage configs/shapes-default.yaml runs/shapes-default
stage configs/shapes-default-left.yaml runs/shapes-default-left
stage configs/shapes-vae-decoder.yaml runs/shapes-vae-decoder

assembled=runs/default-model-assembled
rm -rf "$assembled" assets/default-model.tmp
cp -r runs/shapes-default-left/final "$assembled"
rm -rf "$assembled/vae" "$assembled/DONE"
cp -r runs/shapes-vae-decoder/final/vae "$assembled/vae"
"$lumen" convert "$assembled" -o assets/default-model.tmp --format diffusers --dtype f16
# The settings the model was judged with (txt2img uses them unless told otherwise).
cat > assets/default-model.tmp/lumen_generation.json <<'JSON'
{"steps": 25, "cfg_scale": 1.5, "guidance_rescale": 0.7}
JSON
# The model card and its pictures (not made by this script) stay.
for f in assets/default-model/README.md assets/default-model/*.png; do [[ -f "$f" ]] && cp "$f" assets/default-model.tmp/; done
rm -rf assets/default-model
mv assets/default-model.tmp assets/default-model
du -sh assets/default-model
