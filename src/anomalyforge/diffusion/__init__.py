"""anomalyforge.diffusion: the latent-diffusion core shared by the diffusion generators.

Modules (each usable on its own; nothing heavy is imported until used):

* `loading`      `load_ldm(base_model, device=None, precision="auto") -> LDM` — a diffusers SD 1.x/2.x
                 folder or cached hub id; frozen UNet/VAE/CLIP + scheduler config; clear ConfigErrors
                 (no model, not an LDM, not downloaded). `LDM.encode_images / decode_latents /
                 make_scheduler("ddim"|"ddpm")`.
* `tiny`         `make_tiny_model(dir, seed=0)` — random-weight checkpoint in the same layout (tests).
* `textual_inversion`  placeholder tokens, `TokenBank` (learned vectors, safetensors save/load),
                 `EmbeddingInjector` (swaps placeholder embeddings — shared or per-sample — while the
                 text encoder runs; nothing in the encoder changes), `encode_prompts`, `token_positions`.
* `spatial_encoder`    `SpatialEncoder(n_tokens, dim, backbone="resnet50"|"tiny"|resnet*, weights)` —
                 mask -> n text tokens (ResNet + FPN + one FC head per token).
* `masked_loss`  `masked_mse`, `loss_mask_to_latent`, `mask_to_latent`, `masked_diffusion_loss`
                 (||m ⊙ (ε − ε_θ)||²), `train_params` (AdamW on fp32 master weights, autocast / GradScaler).
* `blended`      `blended_sample` (Blended Latent Diffusion, DDIM/DDPM, per-seed generators, a
                 `before_step` hook; no mask = free sampling; `strength` < 1 = SDEdit),
                 `feather_mask`, `composite` (exact good pixels outside the
                 dilated mask), image <-> tensor helpers.
* `attention`    `AttentionController`, `ReweightingAttnProcessor` (pre-softmax AAR), `install_processors`,
                 `aar_weights`, `dilation_radius` / `blend_mask_schedule`, `make_reweight_hook`.
* `mask_generation`  mask textual-inversion helpers (`sample_masks` with CFG, `threshold_mask`,
                 `border_ok` / `acceptable`) and `synthesize_mask` (shared `anomalyforge.masks` enhance + place).
* `augment`      `augment_pair` — the official joint flips / rotation / crop keeping the defect box;
                 `flip_pair`, `to_resolution`.
* `dual_attention`  `DualAdapters` (per-branch LoRA + branch interaction for every attention layer,
                 `install(unet)`), `DualAttnProcessor`, `interleave` / `deinterleave` (DualAnoDiff).

The generators built from these are `anomalyforge.synth.anomalydiffusion`, `.gaa` and `.dualanodiff`.
"""
