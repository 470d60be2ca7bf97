"""Model card templates, shipped inside the wheel as `hf_aft.model_cards` (see pyproject.toml)."""
