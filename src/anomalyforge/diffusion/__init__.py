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
* `masked_loss`  `masked_mse`, `mask_to_latent`, `masked_diffusion_loss` (||m ⊙ (ε − ε_θ)||²),
                 `train_params` (AdamW on a given parameter list only, optional decay / clipping).
* `blended`      `blended_sample` (Blended Latent Diffusion, DDIM/DDPM, per-seed generators, a
                 `before_step` hook; no mask = free sampling; `strength` < 1 = SDEdit),
                 `feather_mask`, `composite` (exact good pixels outside the
                 dilated mask), image <-> tensor helpers.
* `attention`    `AttentionController`, `ReweightingAttnProcessor`, `install_processors`,
                 `region_weights` / `weight_map` (AnomalyDiffusion eq. 7), `make_reweight_hook`.
* `mask_generation`  mask textual-inversion helpers (`sample_masks` with CFG, `acceptable` border /
                 area rejection) and `synthesize_mask` (shared `anomalyforge.masks` enhance + place).
* `augment`      `augment_pair` — joint crop / translation / rotation keeping the defect inside;
                 `flip_pair`, `to_resolution`.
* `dual_attention`  `DualAdapters` (per-branch LoRA + branch interaction for every attention layer,
                 `install(unet)`), `DualAttnProcessor`, `interleave` / `deinterleave` (DualAnoDiff).

The generators built from these are `anomalyforge.synth.anomalydiffusion`, `.gaa` and `.dualanodiff`.
"""
