"""Template parsing and answer restore speed. Run by hand:

    .venv/bin/python bench/paraphrase_templates.py --templates 1000 --answers 10000

Parses a folder of generated template files (what the sensor does every tick) and restores
generated LLM answers (what paraphrase_sets does per answer).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TEMPLATE = """\
  - name: skill_{i}
    context: Something happened ({i}).
    variables:
      index: {{type: int, min: 1, max: 5, ordinal: true, description: which one}}
      count: {{type: int, min: 1, max: 59, description: how many}}
      unit:
        type: options
        description: the unit
        options: [{{value: minute, de: Minute, ru: минута}}, {{value: hour, de: Stunde, ru: час}}]
    lines:
      en: ["The {{index}} thing {i} runs {{count+unit}}.", "Thing {i} done."]
      de: ["Das {{index}} Ding {i} läuft {{count+unit}}.", "Ding {i} fertig."]
      ru: ["{{index}} штука {i} идёт {{count+unit}}.", "Штука {i} готова."]
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--templates", type=int, default=1000)
    parser.add_argument("--per-file", type=int, default=10)
    parser.add_argument("--answers", type=int, default=10000)
    args = parser.parse_args()

    from chara_assets.paraphrase.restore import restore_answer
    from chara_assets.paraphrase.templates import load_templates

    folder = Path(tempfile.mkdtemp(prefix="chara-bench-templates-"))
    for start in range(0, args.templates, args.per_file):
        body = "".join(
            TEMPLATE.format(i=i) for i in range(start, min(args.templates, start + args.per_file))
        )
        (folder / f"skill_{start:06d}.yaml").write_text("templates:\n" + body, encoding="utf-8")
    started = time.perf_counter()
    library = load_templates(folder)
    parse_s = time.perf_counter() - started
    assert len(library.templates) == args.templates and not library.errors
    print(
        f"parse: {args.templates} templates in {args.templates // args.per_file} files: "
        f"{parse_s:.2f} s ({args.templates / parse_s:.0f} templates/s)"
    )

    group = library.templates["skill_0"].groups("en")[1]
    answer = "\n".join(
        [
            "Here you go:",
            "- Your {index} thing runs {count+unit}, yay!",
            '* "{index}" thing: {{count+unit}} left.',
            "1. The {number} thing runs {count+unit}.",
            "2) The {index} thing runs.",
            "- I'm sorry, I cannot do that.",
        ]
    )
    started = time.perf_counter()
    for _ in range(args.answers):
        restore_answer(answer, group.lines)
    restore_s = time.perf_counter() - started
    print(
        f"restore: {args.answers} answers of 5 lines: {restore_s:.2f} s "
        f"({args.answers / restore_s:.0f} answers/s)"
    )


if __name__ == "__main__":
    main()
