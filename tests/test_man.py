#!/usr/bin/env python3
"""The man pages (man/): that they render cleanly, and that they cannot
drift from what they describe.

  test_man.py render  SRC BUILD CMAKE   man -l, groff -ww and mandoc -T lint
                                        say nothing; 80 columns; ASCII; the
                                        man component installs and `man vigild`
                                        finds the installed page
  test_man.py keys    SRC               vigil.yaml(5)'s keys are the docs'
                                        tables' and the plugins' and rule
                                        kinds' option tables (names, types,
                                        defaults); vigil-plugin(7) names every
                                        field and code of the public header
  test_man.py options SRC BUILD         every option of each tool's --help is
                                        in its page and the reverse; the
                                        pages' version is vigild's

The key tables are kept by hand in both places and compared here, rather
than generated: the page reads from the tree with `man -l man/...` and needs
no build step, and a mismatch fails loudly naming the key.
Exit 0: ok; 1: a difference (each printed); 77: man is not installed.
"""
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

PAGES = [
    "vigild.8",
    "vigil.yaml.5",
    "vigil-tap.1",
    "vigil-pub.1",
    "vigil-top.1",
    "vigil-bench.1",
    "vigil-keygen.1",
    "vigil-plugin.7",
]
WIDTH = 80

problems = []


def problem(msg):
    problems.append(msg)
    print("FAIL: " + msg)


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


# ---- roff ---------------------------------------------------------------


def unroff(s):
    """Text of a roff fragment: escapes resolved, font changes dropped."""
    s = re.sub(r"\\f(\[[^]]*\]|\(..|.)", "", s)
    s = s.replace(r"\(dq", '"').replace(r"\(mu", "*").replace(r"\(em", "--")
    s = s.replace(r"\-", "-").replace(r"\ ", " ").replace(r"\~", " ")
    s = s.replace(r"\&", "").replace(r"\%", "").replace(r"\c", "")
    return s.replace(r"\e", "\\")


def macro_args(line):
    """The arguments of a macro line, as roff splits them (quotes, "")."""
    args, i, n = [], 0, len(line)
    while i < n:
        while i < n and line[i] == " ":
            i += 1
        if i >= n:
            break
        if line[i] == '"':
            i += 1
            arg = ""
            while i < n:
                if line[i] == '"':
                    if i + 1 < n and line[i + 1] == '"':
                        arg += '"'
                        i += 2
                        continue
                    i += 1
                    break
                arg += line[i]
                i += 1
            args.append(arg)
        else:
            j = i
            while j < n and line[j] != " ":
                j += 1
            args.append(line[i:j])
            i = j
    return args


def tag_text(line):
    """The text of a .TP tag line: `.B x`, `.BR x " y"`, or plain text."""
    m = re.match(r"^\.(B|I|BR|BI|IR|RB|IB|RI)\s+(.*)$", line)
    if m:
        return unroff("".join(macro_args(m.group(2))))
    if line.startswith("."):
        return None
    return unroff(line)


# ---- markdown -----------------------------------------------------------


def md_cells(line):
    """Cells of a markdown table row; `\\|` is a literal bar."""
    parts, cur, i = [], "", 0
    body = line.strip()
    if body.startswith("|"):
        body = body[1:]
    if body.endswith("|") and not body.endswith("\\|"):
        body = body[:-1]
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body) and body[i + 1] == "|":
            cur += "|"
            i += 2
            continue
        if body[i] == "|":
            parts.append(cur.strip())
            cur = ""
        else:
            cur += body[i]
        i += 1
    parts.append(cur.strip())
    return parts


def md_text(s):
    s = re.sub(r"\[([^]]*)\]\([^)]*\)", r"\1", s)  # links: their text
    return s.replace("`", "").strip()


def md_key_tables(path):
    """Every table of a markdown file whose first column is "key", as a list
    of {key: (type or None, default or None)} plus which columns it has."""
    tables = []
    lines = read(path).split("\n")
    i = 0
    while i < len(lines):
        if lines[i].startswith("|") and i + 1 < len(lines) and re.match(r"^\|\s*-", lines[i + 1]):
            head = [c.lower() for c in md_cells(lines[i])]
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(md_cells(lines[i]))
                i += 1
            if head and head[0] == "key":
                cols = {name: k for k, name in enumerate(head)}
                keys = {}
                for r in rows:
                    m = re.search(r"`([^`]+)`", r[0])
                    key = m.group(1) if m else md_text(r[0])
                    typ = md_text(r[cols["type"]]) if "type" in cols else None
                    dflt = None
                    if "default" in cols:
                        dflt = norm_default(md_text(r[cols["default"]]))
                    keys[key] = (typ, dflt)
                tables.append({"keys": keys, "type": "type" in cols, "default": "default" in cols})
            continue
        i += 1
    return tables


def norm_default(d):
    d = " ".join(d.split())
    if d.startswith("(") and d.endswith(")") and "(" not in d[1:-1]:
        d = d[1:-1]
    return d or None


# ---- C option tables ----------------------------------------------------

C_TYPES = {
    "STRING": "string",
    "INT": "int",
    "DOUBLE": "number",
    "BOOL": "bool",
    "DURATION": "duration",
    "SIZE": "size",
    "LIST": "list",
    "MAP": "map",
}
C_OPTION = re.compile(r'\{\s*"(\w+)",\s*VIGIL_OPT_(\w+),\s*(NULL|"((?:[^"\\]|\\.)*)")', re.S)


def c_options(src, path):
    text = read(os.path.join(src, path))
    if "VIGIL_ALERT_OPTIONS," in text:
        text += read(os.path.join(src, "pipeline/rules/alert.h"))
    text = text.replace("\\\n", "\n")  # macro line continuations
    opts = {}
    for m in C_OPTION.finditer(text):
        opts[m.group(1)] = (C_TYPES[m.group(2)], m.group(4))
    return opts


# ---- vigil.yaml(5) ------------------------------------------------------

ENTRY = re.compile(r"^(?:(?P<type>[^;()][^;]*?)(?:; (?:default: (?P<d1>.*)|(?P<r1>required)))?"
                   r"|default: (?P<d2>.*)|(?P<r2>required))$")


def page_key_lists(page):
    """{marker: {key: (type, default)}} from the `.\\" keys:` regions."""
    lists, cur = {}, None
    lines = read(page).split("\n")
    for i, line in enumerate(lines):
        m = re.match(r'^\.\\" keys: (.+)$', line)
        if m:
            cur = m.group(1).strip()
            lists.setdefault(cur, {})
            continue
        if line.startswith(".SH"):
            cur = None
        if cur is None or line != ".TP" or i + 1 >= len(lines):
            continue
        tag = lines[i + 1]
        m = re.match(r"^\.(B|BR)\s+(.*)$", tag)
        args = macro_args(m.group(2)) if m else []
        if not m or len(args) > 2:
            problem(f"vigil.yaml.5:{i + 2}: a key entry must be"
                    f" .BR key \" (type; default: x)\": {tag}")
            continue
        key = unroff(args[0])
        typ = dflt = None
        if len(args) == 2:
            rest = unroff(args[1]).strip()
            inner = re.match(r"^\((.*)\)$", rest)
            e = ENTRY.match(inner.group(1)) if inner else None
            if not e:
                problem(f"vigil.yaml.5:{i + 2}: {key}: cannot read '{rest}' as (type; default: x)")
                continue
            typ = e.group("type")
            dflt = e.group("d1") or e.group("d2")
            if e.group("r1") or e.group("r2"):
                dflt = "required"
        if key in lists[cur]:
            problem(f"vigil.yaml.5:{i + 2}: {key} twice under '{cur}'")
        lists[cur][key] = (typ, dflt)
    return lists


def check_keys(src):
    page = os.path.join(src, "man/vigil.yaml.5")
    lists = page_key_lists(page)
    used = set()
    for marker, man in lists.items():
        for source in marker.split():
            path, _, nth = source.partition("#")
            if not os.path.exists(os.path.join(src, path)):
                problem(f"vigil.yaml.5: marker '{marker}': no file {path}")
                continue
            used.add(source if nth else path)
            if path.endswith(".c"):
                compare_c(path, c_options(src, path), man)
                continue
            tables = md_key_tables(os.path.join(src, path))
            k = int(nth or 1)
            if k > len(tables):
                problem(f"vigil.yaml.5: {path} has no key table #{k}")
                continue
            compare_md(source, tables[k - 1], man)
    # Every key table and every option table is covered by the page.
    # (docs/events.md's "key" table is the event body's, not config.)
    for pattern in ["docs/configuration.md", "docs/rules.md", "plugins/*/README.md",
                    "sinks/*/README.md"]:
        for f in sorted(glob.glob(os.path.join(src, pattern))):
            rel = os.path.relpath(f, src)
            for k in range(1, len(md_key_tables(f)) + 1):
                name = rel if k == 1 else f"{rel}#{k}"
                if name not in used:
                    problem(f"vigil.yaml.5 lists no keys of {name}"
                            f" (add a '.\\\" keys: {name}' list)")
    for pattern in ["plugins/*/*.c", "sinks/*/*.c", "pipeline/rules/*.c"]:
        for f in sorted(glob.glob(os.path.join(src, pattern))):
            rel = os.path.relpath(f, src)
            if re.search(r"struct vigil_option \w+\[\]", read(f)) and c_options(src, rel):
                if rel not in used:
                    problem(f"vigil.yaml.5 lists no keys of {rel}'s option table")


def compare(source, theirs, man, type_ok, default_ok):
    """theirs and man: {key: (type, default)}; the predicates take (their
    value, the page's) and say whether the page agrees."""
    for key in sorted(theirs.keys() - man.keys()):
        problem(f"vigil.yaml.5: {key} is in {source} but not in the page")
    for key in sorted(man.keys() - theirs.keys()):
        problem(f"vigil.yaml.5: {key} is in the page but not in {source}")
    for key in sorted(theirs.keys() & man.keys()):
        (tt, td), (mt, md) = theirs[key], man[key]
        if not type_ok(tt, mt):
            problem(f"vigil.yaml.5: {key}: type '{mt}', but {source} says '{tt}'")
        if not default_ok(td, md):
            problem(f"vigil.yaml.5: {key}: default '{md}', but {source} says '{td}'")


def compare_md(source, table, man):
    # Only the columns the table has: docs/rules.md's has neither type nor default.
    compare(source, table["keys"], man, lambda t, m: not table["type"] or t == m,
            lambda d, m: not table["default"] or d == m)


def compare_c(path, opts, man):
    # "list" in C is "list" or "list of globs" in the page; a NULL default in
    # C is no default, or one the plugin computes ("5 times the series' gap").
    compare(f"{path}'s option table", opts, man, lambda t, m: bool(m) and m.split()[0] == t,
            lambda d, m: d is None or d == m)


# ---- vigil-plugin(7) ----------------------------------------------------


def check_abi(src):
    header = read(os.path.join(src, "pipeline/include/vigil/plugin.h"))
    page = read(os.path.join(src, "man/vigil-plugin.7"))
    text = unroff(page)
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text))
    for struct in ("vigil_plugin", "vigil_api"):
        body = re.search(r"struct %s \{(.*?)\n\};" % struct, header, re.S).group(1)
        body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
        fields = re.findall(r"\(\*(\w+)\)\(", body)
        fields += re.findall(r"^\s*(?:const )?[\w ]+?\**\s*(\w+);", body, re.M)
        for f in fields:
            if f not in words:
                problem(f"vigil-plugin.7 does not name struct {struct}'s field {f}")
    for code in re.findall(r"X\((\w+), -\d+,", header):
        if "VIGIL_E" + code not in words:
            problem(f"vigil-plugin.7 does not name VIGIL_E{code}")
    abi = re.search(r"#define VIGIL_PLUGIN_ABI (\d+)", header).group(1)
    if f"This page is ABI {abi}" not in " ".join(text.split()):
        problem(f"vigil-plugin.7 does not say 'This page is ABI {abi}'")
    # The example is docs/plugins.md's, which test_readme.sh builds and runs.
    md = re.search(r"```c\n(/\* hello\.c:.*?)```", read(os.path.join(src, "docs/plugins.md")), re.S)
    ex = re.search(r'\.\\" example: docs/plugins\.md\n\.PP\n\.EX\n(.*?)\.EE\n', page, re.S)
    if not md or not ex:
        problem("vigil-plugin.7 or docs/plugins.md lost the hello.c example")
    elif unroff(ex.group(1)) != md.group(1):
        problem("vigil-plugin.7's example differs from docs/plugins.md's hello.c")


# ---- the tools' options -------------------------------------------------

# page, command, the page's OPTIONS subsection, the source that parses them
TOOLS = [
    ("vigild.8", ["vigild"], None, "pipeline/main.c"),
    ("vigil-tap.1", ["vigil-tap"], None, "tools/vigil-tap.c"),
    ("vigil-pub.1", ["vigil-pub"], None, "tools/vigil-pub.c"),
    ("vigil-top.1", ["vigil-top"], None, "tools/vigil-top.c"),
    ("vigil-keygen.1", ["vigil-keygen"], None, "tools/vigil-keygen.c"),
    ("vigil-bench.1", ["vigil-bench"], "vigil-bench", "tools/vigil-bench.c"),
    ("vigil-bench.1", ["vigil-bench", "collect"], "vigil-bench collect", "tools/bench/collect.c"),
    ("vigil-bench.1", ["vigil-bench", "selftest"], "vigil-bench selftest",
     "tools/bench/selftest.c"),
]
OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z-]*|-[a-zA-Z])(?![\w-])")


def source_options(path):
    """What the program accepts: its getopt_long table and short-option
    string; a program without getopt (vigil-keygen) compares argv[1] with
    literal "-h" / "--help"."""
    text = read(path)
    longs = re.findall(r'\{"([\w-]+)",\s*(?:no|required|optional)_argument', text)
    shorts = re.search(r'getopt_long\(\s*argc,\s*argv,\s*"([^"]*)"', text)
    if not longs and not shorts:
        return set(re.findall(r'strcmp\(argv\[1\], "(-[\w-]+)"\)', text))
    opts = {"--" + name for name in longs}
    opts |= {"-" + c for c in (shorts.group(1) if shorts else "") if c != ":"}
    return opts


def page_options(page, subsection):
    """Options named in the .TP tags of OPTIONS (or of one .SS of it)."""
    opts, in_opts, in_ss = set(), False, subsection is None
    lines = read(page).split("\n")
    for i, line in enumerate(lines):
        if line.startswith(".SH"):
            in_opts = unroff(" ".join(macro_args(line[3:]))) == "OPTIONS"
            continue
        if line.startswith(".SS"):
            in_ss = subsection is None or unroff(" ".join(macro_args(line[3:]))) == subsection
            continue
        if in_opts and in_ss and line == ".TP" and i + 1 < len(lines):
            opts |= set(OPTION.findall(tag_text(lines[i + 1]) or ""))
    return opts


def check_options(src, build):
    version = subprocess.run([os.path.join(build, "vigild"), "--version"], capture_output=True,
                             text=True).stdout.split()[1]
    for name in PAGES:
        th = re.search(r"^\.TH .*\"vigil ([^\"]+)\"", read(os.path.join(src, "man", name)), re.M)
        if not th or th.group(1) != version:
            said = th.group(1) if th else "?"
            problem(f"{name}: .TH says vigil {said}, vigild --version {version}")
    for name, argv, subsection, source in TOOLS:
        page = os.path.join(src, "man", name)
        run = subprocess.run([os.path.join(build, argv[0])] + argv[1:] + ["--help"],
                             capture_output=True, text=True)
        if run.returncode != 0:
            problem(f"{' '.join(argv)} --help exited {run.returncode}: {run.stderr}")
            continue
        helped = set(OPTION.findall(run.stdout))
        accepted = source_options(os.path.join(src, source))
        documented = page_options(page, subsection)
        where = f"{name} OPTIONS{' / ' + subsection if subsection else ''}"
        # The page documents exactly what the program accepts, and at least
        # what its --help names (which may leave out long or short forms).
        for opt in sorted(accepted - documented):
            problem(f"{where}: {source} accepts {opt}, the page does not name it")
        for opt in sorted(documented - accepted):
            problem(f"{where}: the page names {opt}, {source} does not accept it")
        for opt in sorted(helped - documented):
            problem(f"{where}: '{' '.join(argv)} --help' names {opt}, the page does not")
        text = unroff(read(page))
        for d in re.findall(r"\(default ([^\s;,()]+)[;,)]", run.stdout):
            if d not in text:
                problem(f"{name}: '{' '.join(argv)} --help' says the default is {d};"
                        " the page does not")


# ---- rendering ----------------------------------------------------------


def check_render(src, build, cmake):
    if not shutil.which("man"):
        print("SKIP: man is not installed (tools/dev.sh setup installs man-db)")
        sys.exit(77)
    env = dict(os.environ, MANWIDTH=str(WIDTH), MAN_KEEP_FORMATTING="")
    found = sorted(os.path.basename(p) for p in glob.glob(os.path.join(src, "man/*.[1-8]")))
    if found != sorted(PAGES):
        problem(f"man/ holds {found}, expected {sorted(PAGES)}")
    long_ok = set()  # the plugin example is docs/plugins.md's, at its 100 columns
    md = re.search(r"```c\n(/\* hello\.c:.*?)```", read(os.path.join(src, "docs/plugins.md")), re.S)
    if md:
        long_ok = {line.strip() for line in md.group(1).split("\n")}
    mandoc = shutil.which("mandoc")
    if not mandoc:
        print("note: mandoc is not installed: the mandoc -T lint pass is left out")
    for name in PAGES:
        page = os.path.join(src, "man", name)
        raw = open(page, "rb").read()
        bad = [n + 1 for n, line in enumerate(raw.split(b"\n")) if any(b > 127 for b in line)]
        if bad:
            problem(f"{name}: non-ASCII bytes on lines {bad} (use roff escapes)")
        out = subprocess.run(["man", "-l", page], capture_output=True, text=True, env=env)
        if out.returncode != 0 or out.stderr or not out.stdout.strip():
            problem(f"man -l {name}: exit {out.returncode}: {out.stderr.strip()}")
        for line in out.stdout.split("\n"):
            if len(line) > WIDTH and line.strip() not in long_ok:
                problem(f"man -l {name}: a line over {WIDTH} columns: {line.strip()}")
        gr = subprocess.run(["groff", "-ww", "-z", "-man", page], capture_output=True, text=True)
        if gr.returncode != 0 or gr.stderr:
            problem(f"groff -ww {name}: {gr.stderr.strip()}")
        if mandoc:
            lint = subprocess.run([mandoc, "-T", "lint", "-W", "all", page], capture_output=True,
                                  text=True)
            if lint.returncode != 0 or lint.stdout or lint.stderr:
                problem(f"mandoc -T lint {name}: {(lint.stdout + lint.stderr).strip()}")
    # Installed: the man component lands in <prefix>/share/man/manN, and man
    # finds the page by name there.
    with tempfile.TemporaryDirectory(prefix="vigil-man.") as prefix:
        inst = subprocess.run([cmake, "--install", build, "--prefix", prefix, "--component", "man"],
                              capture_output=True, text=True)
        if inst.returncode != 0:
            problem(f"cmake --install --component man: {inst.stdout}{inst.stderr}")
            return
        for name in PAGES:
            section = name.rsplit(".", 1)[1]
            if not os.path.isfile(os.path.join(prefix, "share/man", "man" + section, name)):
                problem(f"{name} not installed in {prefix}/share/man/man{section}")
        out = subprocess.run(["man", "vigild"], capture_output=True, text=True,
                             env=dict(env, MANPATH=os.path.join(prefix, "share/man")))
        if out.returncode != 0 or out.stderr or "vigild - watch" not in out.stdout:
            problem(f"man vigild (MANPATH={prefix}/share/man): {out.stderr.strip()}")


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in ("render", "keys", "options"):
        print(__doc__)
        return 2
    mode, src = sys.argv[1], sys.argv[2]
    if mode == "render":
        check_render(src, sys.argv[3], sys.argv[4])
    elif mode == "keys":
        check_keys(src)
        check_abi(src)
    else:
        check_options(src, sys.argv[3])
    if problems:
        print(f"{len(problems)} problem(s)")
        return 1
    print(f"man pages ({mode}): ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
