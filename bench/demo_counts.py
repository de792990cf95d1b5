"""The figures of the last ``chara demo`` (or any run) from the Dagster instance: for every asset
partition, the numeric and short text metadata of its latest materialization, one line each.
Compare two homes to see that a change kept behaviour:

    DAGSTER_HOME=$CHARA_HOME/dagster .venv/bin/python bench/demo_counts.py > before.txt
"""

import dagster as dg


def main() -> None:
    with dg.DagsterInstance.get() as instance:
        for key in sorted(instance.get_asset_keys(), key=lambda k: k.to_user_string()):
            records = instance.fetch_materializations(key, limit=200).records
            latest: dict[str | None, dg.AssetMaterialization] = {}
            for record in records:  # newest first
                m = record.asset_materialization
                if m is not None:
                    latest.setdefault(m.partition, m)
            for partition, m in sorted(latest.items(), key=lambda kv: str(kv[0])):
                figures = []
                for name, value in sorted(m.metadata.items()):
                    raw = getattr(value, "value", None)
                    if isinstance(raw, bool | int | float) or (
                        isinstance(raw, str) and len(raw) <= 40 and "\n" not in raw
                    ):
                        figures.append(f"{name}={raw}")
                print(f"{key.to_user_string()} [{partition}]: " + " ".join(figures))


if __name__ == "__main__":
    main()
