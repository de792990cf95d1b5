"""chara's Dagster assets, sensors and jobs; ``chara_assets.definitions`` assembles them."""
