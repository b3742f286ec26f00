#!/usr/bin/env python3
"""gen-man.py - generate the manual pages tern(8) and tern.conf(5) from the docs.

    scripts/gen-man.py [--tern BIN] [--out DIR] [--check]

man/tern.8 is built from `tern --help` (the synopsis and the commands), the
README's introduction and the sections of docs/lifecycle.md on starting,
privileges, reloading, stopping and installing; man/tern.conf.5 from
docs/configuration.md (the file format, every key table, what SIGHUP applies,
the aliases file). BIN defaults to build/tern, DIR to man/. With --check,
nothing is written: the pages are generated in memory and compared with the
files in DIR; the exit status is 1 when one differs (or is missing).

The Markdown understood is what the docs use: headings, paragraphs, lists,
code blocks, tables, `code`, **bold**, *emphasis* and [links](...). Tables
become tagged paragraphs (.TP): the first column is the tag, the other
columns follow as "name: value" and the last one as text. Python 3 standard
library only; the output is plain man(7) macros, deterministic (no date).
"""

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Characters outside ASCII that the docs use, as groff escapes (so that the
# pages render on an ASCII terminal too). Any other one is an error.
SPECIAL = {"§": r"\(sc", "…": "...", "—": r"\(em", "–": r"\(en", "→": r"\(->",
           "≥": r"\(>=", "≤": r"\(<=", "×": r"\(mu", "é": r"\['e]"}


class GenError(Exception):
    pass


# -- inline text -------------------------------------------------------------------

def escape(text):
    """Plain text to groff: backslashes, and the special characters."""
    out = []
    for ch in text.replace("\\", "\\e"):
        if ord(ch) < 128:
            out.append(ch)
        elif ch in SPECIAL:
            out.append(SPECIAL[ch])
        else:
            raise GenError("no groff escape for %r (U+%04X): add it to SPECIAL" % (ch, ord(ch)))
    return "".join(out)


def code(text):
    """A code span: bold, with minus signs as \\- (so that options copy well)."""
    return r"\fB" + escape(text).replace("-", r"\-") + r"\fR"


INLINE = re.compile(r"(?P<tick>`+)(?P<code>.+?)(?P=tick)"
                    r"|\*\*(?P<bold>.+?)\*\*"
                    r"|\[(?P<ltext>[^\]]+)\]\((?P<url>[^)\s]+)\)"
                    r"|(?<![\w*])\*(?P<em>[^*\s][^*]*?)\*(?![\w*])")


def inline(text):
    """Markdown inline markup to groff."""
    out, pos = [], 0
    for m in INLINE.finditer(text):
        out.append(escape(text[pos:m.start()]))
        if m.group("code") is not None:
            c = m.group("code")
            if len(m.group("tick")) > 1:
                c = c.strip()
            out.append(code(c))
        elif m.group("bold") is not None:
            out.append(r"\fB" + inline(m.group("bold")) + r"\fR")
        elif m.group("ltext") is not None:
            out.append(inline(m.group("ltext")))
        else:
            out.append(r"\fI" + inline(m.group("em")) + r"\fR")
        pos = m.end()
    out.append(escape(text[pos:]))
    return "".join(out)


def text_line(s):
    """One output line of filled text: no leading space or control character."""
    s = s.strip()
    if s.startswith((".", "'")):
        s = r"\&" + s
    return s


# -- blocks ------------------------------------------------------------------------

def split_row(line):
    """The cells of a table row (a \\| inside a cell is a literal bar)."""
    s = line.strip()
    if s.startswith("|"):
        s = s[1:]
    if s.endswith("|") and not s.endswith("\\|"):
        s = s[:-1]
    cells = re.split(r"(?<!\\)\|", s)
    return [c.replace("\\|", "|").strip() for c in cells]


def table(rows):
    """A Markdown table as tagged paragraphs."""
    head = split_row(rows[0])
    out = []
    for row in rows[2:]:
        cells = split_row(row)
        if len(cells) != len(head):
            raise GenError("table row with %d cells, header has %d: %s" % (len(cells), len(head), row))
        out.append(".TP")
        out.append(text_line(inline(cells[0])))
        parts = []
        for name, value in zip(head[1:-1], cells[1:-1]):
            if value:
                parts.append("%s: %s." % (escape(name.capitalize()), inline(value)))
        last = inline(cells[-1])
        if len(head) > 2:
            parts.append(last)
            out.append(text_line(" ".join(parts)))
        else:
            out.append(text_line(last))
    return out


def blocks(md, top_level=".SH"):
    """Markdown to groff lines. '##' headings become top_level, '###' .SS."""
    lines = md.splitlines()
    out = []
    i = 0
    para = []

    def flush():
        if para:
            out.append(".PP")
            out.append(text_line(inline(" ".join(para))))
            para.clear()

    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if not stripped:
            flush()
            i += 1
            continue
        if stripped.startswith("```"):
            flush()
            i += 1
            body = []
            while i < len(lines) and not lines[i].strip().startswith("```"):
                body.append(lines[i])
                i += 1
            i += 1
            out += [".PP", ".RS 4", ".nf"]
            out += [r"\&" + escape(b) for b in body]
            out += [".fi", ".RE"]
            continue
        if line.startswith("    ") and not para:
            # an indented code block
            body = []
            while i < len(lines) and (lines[i].startswith("    ") or not lines[i].strip()):
                body.append(lines[i][4:])
                i += 1
            while body and not body[-1].strip():
                body.pop()
            out += [".PP", ".RS 4", ".nf"]
            out += [r"\&" + escape(b) for b in body]
            out += [".fi", ".RE"]
            continue
        m = re.match(r"(#{1,4})\s+(.*)", stripped)
        if m:
            flush()
            level, title = len(m.group(1)), m.group(2)
            if level <= 2:
                out.append('%s "%s"' % (top_level, inline(title).upper()))
            else:
                out.append('.SS "%s"' % inline(title))
            i += 1
            continue
        if stripped.startswith("|"):
            flush()
            rows = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                rows.append(lines[i])
                i += 1
            out += table(rows)
            continue
        m = re.match(r"(\s*)([-*]|\d+\.)\s+(.*)", line)
        if m and not para:
            # a list: items until a blank line followed by a non-item
            while True:
                m = re.match(r"(\s*)([-*]|\d+\.)\s+(.*)", lines[i]) if i < len(lines) else None
                if not m:
                    break
                bullet = r"\(bu" if m.group(2) in "-*" else m.group(2)
                item = [m.group(3)]
                i += 1
                while i < len(lines) and lines[i].strip() and lines[i].startswith(" ") \
                        and not re.match(r"\s*([-*]|\d+\.)\s", lines[i]):
                    item.append(lines[i].strip())
                    i += 1
                out.append(".IP %s 4" % bullet)
                out.append(text_line(inline(" ".join(item))))
                if i < len(lines) and not lines[i].strip():
                    nxt = i + 1
                    if nxt < len(lines) and re.match(r"(\s*)([-*]|\d+\.)\s+", lines[nxt]):
                        i = nxt
            continue
        para.append(stripped)
        i += 1
    flush()
    return out


def sections(md):
    """{title: body} of the '## ' sections of a Markdown page, and its preamble."""
    parts = re.split(r"(?m)^## (.*)$", md)
    pre = parts[0]
    out = {}
    for k in range(1, len(parts), 2):
        out[parts[k].strip()] = parts[k + 1]
    return pre, out


def need(d, key, what):
    if key not in d:
        raise GenError("%s has no section %r" % (what, key))
    return d[key]


# -- the pages ---------------------------------------------------------------------

def header(name, section, version, title):
    return [r'.\" Generated by scripts/gen-man.py from the docs; edit those, then run it again.',
            '.TH %s %s "" "tern %s" "%s"' % (name.upper(), section, version, title),
            ".nh", ".ad l"]


def synopsis_line(usage):
    """'tern cmd [-c FILE] NAME' as bold words, italic metavariables."""
    out = []
    for word in usage.split():
        core = word.strip("[]().,")
        lead = word[:word.index(core)] if core and core in word else ""
        tail = word[len(lead) + len(core):]
        if not core:
            out.append(escape(word))
        elif re.fullmatch(r"[A-Z][A-Z:]*(\.\.\.)?", core):
            out.append(escape(lead) + r"\fI" + escape(core) + r"\fR" + escape(tail))
        else:
            out.append(escape(lead) + r"\fB" + escape(core).replace("-", r"\-") + r"\fR"
                       + escape(tail))
    return " ".join(out)


def help_commands(tern):
    try:
        r = subprocess.run([str(tern), "--help"], capture_output=True, text=True, timeout=30)
    except OSError as e:
        raise GenError("cannot run %s --help: %s (build it, or give --tern)" % (tern, e))
    if r.returncode != 0:
        raise GenError("%s --help exited with %d" % (tern, r.returncode))
    cmds = []
    for line in r.stdout.splitlines():
        line = re.sub(r"^usage:", "", line).strip()
        if not line.startswith("tern"):
            continue
        parts = re.split(r"\s{3,}", line, maxsplit=1)
        cmds.append((parts[0].strip(), parts[1].strip() if len(parts) > 1 else ""))
    if not cmds:
        raise GenError("%s --help printed no usage line" % tern)
    v = subprocess.run([str(tern), "version"], capture_output=True, text=True, timeout=30)
    version = v.stdout.split()[-1] if v.returncode == 0 and v.stdout.split() else "unknown"
    return cmds, version


def tern8(tern):
    cmds, version = help_commands(tern)
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    intro = readme.split("\n## ", 1)[0].split("\n", 1)[1].strip()
    _, life = sections((REPO / "docs" / "lifecycle.md").read_text(encoding="utf-8"))
    out = header("tern", 8, version, "Tern mail server")
    out += ['.SH "NAME"',
            r"tern \- SMTP mail server: MX, submission, queue, relay and Maildir delivery",
            '.SH "SYNOPSIS"']
    for usage, _ in cmds:
        out += [".PP", text_line(synopsis_line(usage))]
    out.append('.SH "DESCRIPTION"')
    out += blocks(intro)
    out += [".PP", text_line(inline(
        "The configuration file is described in **tern.conf**(5); the documentation of "
        "every module is in the `docs/` directory of the source tree."))]
    out.append('.SH "COMMANDS"')
    for usage, what in cmds:
        out += [".TP", text_line(synopsis_line(usage))]
        if what:
            out.append(text_line(inline(what[0].upper() + what[1:] + ".")))
    out += ['.SH "OPTIONS"', ".TP", r"\fB\-c\fR \fIFILE\fR",
            text_line(inline("The configuration file; `/etc/tern/tern.conf` by default."))]
    for title in ("Start", "Privileges", "Reload: SIGHUP", "Stop: SIGTERM or SIGINT",
                  "Installing as a service"):
        out += blocks("## %s\n%s" % (title, need(life, title, "docs/lifecycle.md")))
    out += ['.SH "EXIT STATUS"', ".PP",
            text_line(inline("`0`: success (for `serve`, a clean stop on SIGTERM or SIGINT); "
                             "`1`: an error (invalid configuration, a file that cannot be "
                             "read, a port that cannot be bound, a `run_user` that does not "
                             "exist); `2`: bad usage."))]
    out += ['.SH "FILES"']
    for path, what in (("/etc/tern/tern.conf", "the configuration file"),
                       ("/etc/tern/aliases", "the aliases file"),
                       ("/etc/tern/users", "the user store"),
                       ("/etc/tern/dkim/", "the DKIM keys"),
                       ("/var/spool/tern/", "the spool (queue journal)"),
                       ("/var/mail/tern/", "the Maildirs"),
                       ("/etc/systemd/system/tern.service", "the systemd unit")):
        out += [".TP", code(path), text_line(inline(what[0].upper() + what[1:] + "."))]
    out += ['.SH "SEE ALSO"', ".PP",
            r"\fBtern.conf\fR(5), \fBsystemctl\fR(1), \fBsystemd.exec\fR(5), \fBuseradd\fR(8)"]
    return "\n".join(out) + "\n", version


def ternconf5(version):
    md = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    pre, secs = sections(md)
    intro = pre.split("\n", 1)[1]
    out = header("tern.conf", 5, version, "Tern mail server")
    out += ['.SH "NAME"', r"tern.conf \- configuration file of the Tern mail server",
            '.SH "SYNOPSIS"', ".PP", r"\fB/etc/tern/tern.conf\fR", '.SH "DESCRIPTION"']
    out += blocks(intro)
    for title in ("File format", "Keys", "What SIGHUP applies", "The aliases file"):
        out += blocks("## %s\n%s" % (title, need(secs, title, "docs/configuration.md")))
    out += ['.SH "SEE ALSO"', ".PP", r"\fBtern\fR(8)"]
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tern", default=str(REPO / "build" / "tern"), help="the tern binary")
    ap.add_argument("--out", default=str(REPO / "man"), help="where the pages go")
    ap.add_argument("--check", action="store_true",
                    help="compare with the pages in --out instead of writing them")
    args = ap.parse_args()
    try:
        page8, version = tern8(args.tern)
        pages = {"tern.8": page8, "tern.conf.5": ternconf5(version)}
    except GenError as e:
        print("gen-man: %s" % e, file=sys.stderr)
        return 2
    out = Path(args.out)
    stale = []
    for name, text in pages.items():
        path = out / name
        if args.check:
            try:
                current = path.read_text(encoding="utf-8")
            except FileNotFoundError:
                current = None
            if current != text:
                stale.append(str(path))
        else:
            out.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(path.suffix + ".tmp")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path)
            print("gen-man: wrote %s" % path)
    if stale:
        print("gen-man: out of date: %s (run scripts/gen-man.py)" % ", ".join(stale),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
