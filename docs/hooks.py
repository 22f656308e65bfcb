"""MkDocs hook: the committed reports and the findings are pages of the site, read where they live.

MkDocs builds only ``docs/``, but the findings live beside the reports they quote
(``experiments/results/FINDINGS.md``, each study's ``report.md``, ``RUN.md``, plots and ``summary.json``), and the
shipped base's model card beside its weights. This hook adds those files to the site at their repository
paths (``experiments/results/...``, ``experiments/base/MODEL_CARD.md``), so the relative links between them work
on GitHub and in the site alike, with no copy to keep in step. A page under ``docs/`` links to them as on GitHub,
``../experiments/...``; the hook points such a link at the site's copy (``experiments/...``).
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]
#: repository folder -> the file suffixes of it the site serves
SHARED = {"experiments/results": (".md", ".png", ".json"), "experiments/base": (".md",)}
LINK_OUT_OF_DOCS = re.compile(r"(\]\()\.\./(experiments/)")


def on_files(files: Files, config) -> Files:
    for folder, suffixes in SHARED.items():
        for path in sorted((ROOT / folder).rglob("*")):
            if path.is_file() and path.suffix in suffixes:
                files.append(File.generated(config, path.relative_to(ROOT).as_posix(), abs_src_path=str(path)))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.generated_by is None and "/" not in page.file.src_uri:  # a page of docs/ itself, at its top
        return LINK_OUT_OF_DOCS.sub(r"\1\2", markdown)
    return markdown
