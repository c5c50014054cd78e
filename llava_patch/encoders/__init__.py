"""Vision-tower adapters, one file per encoder family, registered with `@register_encoder` (see
`llava_patch.registry`, whose import line names every member)."""
