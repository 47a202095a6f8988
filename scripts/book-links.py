#!/usr/bin/env python3
"""Every link inside the built book (mdbook build docs -> target/book) reaches a page and an
anchor that exist, as mdBook rendered them. tests/docs checks the Markdown with GitHub's
anchors; this checks that mdBook made the same ones. Links that leave the book (to
../README.md, bench/, contrib/) are listed, not failed: they work on GitHub.
Usage: scripts/book-links.py [target/book]"""
import html
import os
import re
import sys

book = sys.argv[1] if len(sys.argv) > 1 else "target/book"
pages = {}
for directory, _, names in os.walk(book):
    for name in names:
        if name.endswith(".html"):
            path = os.path.normpath(os.path.join(directory, name))
            pages[path] = open(path, encoding="utf-8").read()
ids = {path: set(re.findall(r'id="([^"]+)"', text)) for path, text in pages.items()}
broken = 0
for path, text in sorted(pages.items()):
    if os.path.basename(path) in ("print.html", "404.html", "toc.html") or "<main>" not in text:
        continue
    main = text.split("<main>", 1)[1].split("</main>", 1)[0]
    for href in re.findall(r'href="([^"]+)"', main):
        href = html.unescape(href)
        if "://" in href or href.startswith("mailto:"):
            continue
        target, _, anchor = href.partition("#")
        target = os.path.normpath(os.path.join(os.path.dirname(path), target)) if target else path
        if not os.path.exists(target):
            print(f"outside the book: {path}: {href}")
        elif anchor and target.endswith(".html") and anchor not in ids.get(target, set()):
            print(f"BROKEN: {path}: {href}: no id {anchor!r} in {target}")
            broken += 1
print(f"{len(pages)} pages, {broken} broken links")
sys.exit(1 if broken else 0)
