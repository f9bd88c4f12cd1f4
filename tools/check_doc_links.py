#!/usr/bin/env python3
"""Every ](path) and ](path#anchor) in the given .md files resolves: the file
exists, and the anchor is a heading of it (GitHub's slugs)."""
import os, re, sys
def slug(h):
    h = h.strip().lower()
    h = re.sub(r'[^\w\- ]', '', h)   # drop punctuation (backticks, dots, parens)
    return h.replace(' ', '-')
def anchors(path):
    out, inb = set(), False
    for line in open(path):
        if line.startswith('```'): inb = not inb; continue
        m = None if inb else re.match(r'^#{1,6} (.*)', line)
        if m: out.add(slug(m.group(1)))
    return out
bad = n = 0
for f in sys.argv[1:]:
    text = open(f).read()
    text = re.sub(r'```.*?```', '', text, flags=re.S)
    for m in re.finditer(r'\]\(([^)\s]+)\)', text):
        t = m.group(1); n += 1
        if re.match(r'^[a-z]+:', t): continue
        path, _, frag = t.partition('#')
        target = os.path.normpath(os.path.join(os.path.dirname(f), path)) if path else f
        if not os.path.exists(target):
            print(f'{f}: {t}: no such file {target}'); bad += 1; continue
        if frag and target.endswith('.md') and frag not in anchors(target):
            print(f'{f}: {t}: no heading #{frag} in {target}'); bad += 1
print(f'{n} links, {bad} broken'); sys.exit(1 if bad else 0)
