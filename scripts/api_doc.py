#!/usr/bin/env python3
"""api_doc.py — writes docs/api.md, the reference of every public header, from the headers
themselves: each header's opening comment, then its public types and constants (typedefs of
structs, unions, enums and function pointers, struct/enum definitions and #define constants,
verbatim with their field comments), then each exported declaration (LR_API), each with the
comment above it, all in header order. Run it after changing a public header:
scripts/api_doc.py > docs/api.md (tests/api_doc_check.sh fails when docs/api.md is not what
this prints).

It refuses (exit 1, nothing on stdout, one line on stderr per problem naming the header, the
line and the symbol) to write a reference that would silently miss something: an LR_API
declaration or a typedef it cannot parse, any other top-level declaration it does not know,
or a header outside the layers below.

Usage: api_doc.py [SOURCE_ROOT]   (default: the tree this script is in)"""
import os, re, sys

LAYERS = [('base', 'status codes, views, random numbers, CPU state, worker pools, datasets'),
          ('linalg', 'the low-rank core'), ('io', 'crash-safe writes and file formats'),
          ('nn', 'the training engine'), ('lora', 'LoRA adapters and their files'),
          ('mpi', 'across MPI processes (built and installed with -Dmpi only; not in lowrank.h)')]
UMBRELLA = 'lowrank.h'  # includes the layers' headers; declares nothing of its own

IDENT = r'[A-Za-z_]\w*'


class ParseError(Exception):
    def __init__(self, line, symbol, what):
        super().__init__(what)
        self.line, self.symbol, self.what = line, symbol, what


def clean_comment(c):
    lines = [re.sub(r'^\s*/?\*+/?\s?', '', l).rstrip() for l in c.strip().split('\n')]
    lines = [l[:-2].rstrip() if l.endswith('*/') else l for l in lines]
    return '\n'.join(l for l in lines).strip()


def private(name):
    """lr__x, LR__X, _x: the library's own, not the user's."""
    return name.startswith('_') or name.lower().startswith('lr__')


# --- scanning: a header as a list of top-level items ----------------------------------------
# Each item is a dict: kind 'comment' (with trailing = it follows code on its own line), 'pp'
# (a preprocessor line, continuations and comments included), 'code' (a declaration up to its
# ';', or a function definition up to its '}'; code = its text without comments or
# preprocessor lines), or 'extern_c' / 'close' (the C++ linkage braces).

def skip_comment(s, i, line_of):
    if s.startswith('//', i):
        j = s.find('\n', i)
        return len(s) if j < 0 else j
    j = s.find('*/', i + 2)
    if j < 0:
        raise ParseError(line_of(i), '', 'unterminated comment')
    return j + 2


def skip_string(s, i, line_of):
    q, j = s[i], i + 1
    while j < len(s) and s[j] != q:
        if s[j] == '\n':
            break
        j += 2 if s[j] == '\\' else 1
    if j >= len(s) or s[j] != q:
        raise ParseError(line_of(i), '', 'unterminated string or character literal')
    return j + 1


def skip_pp(s, i, line_of):
    """From a '#' to the end of its logical line (backslash continuations and comments in it)."""
    j = i
    while j < len(s):
        if s.startswith('/*', j) or s.startswith('//', j):
            j = skip_comment(s, j, line_of)
        elif s[j] in '"\'':
            try:
                j = skip_string(s, j, line_of)
            except ParseError:  # an apostrophe in #error text, say: not a literal
                j += 1
        elif s[j] == '\\' and s.startswith('\n', j + 1):
            j += 2
        elif s[j] == '\n':
            return j
        else:
            j += 1
    return j


def at_line_start(s, i):
    return s[s.rfind('\n', 0, i) + 1:i].strip() == ''


def scan(s):
    line_of = lambda i: s.count('\n', 0, i) + 1
    items, cur, i, n = [], None, 0, len(s)

    def end_code(j, body):
        items.append({'kind': 'code', 'start': cur['start'], 'end': j, 'line': line_of(cur['start']),
                      'raw': s[cur['start']:j], 'code': ' '.join(''.join(cur['code']).split()),
                      'body': body})

    while i < n:
        c = s[i]
        if s.startswith('/*', i) or s.startswith('//', i):
            j = skip_comment(s, i, line_of)
            if cur is None:
                items.append({'kind': 'comment', 'start': i, 'end': j, 'line': line_of(i),
                              'raw': s[i:j], 'trailing': not at_line_start(s, i)})
            else:
                cur['code'].append(' ')
            i = j
            continue
        if c == '#' and at_line_start(s, i):
            j = skip_pp(s, i, line_of)
            if cur is None:
                items.append({'kind': 'pp', 'start': i, 'end': j, 'line': line_of(i), 'raw': s[i:j]})
            else:
                cur['code'].append(' ')
            i = j
            continue
        if cur is None:
            if c.isspace():
                i += 1
                continue
            if c == '}':
                items.append({'kind': 'close', 'start': i, 'end': i + 1, 'line': line_of(i)})
                i += 1
                continue
            cur = {'start': i, 'depth': 0, 'code': [], 'body': False}
        if c in '"\'':
            j = skip_string(s, i, line_of)
            cur['code'].append(s[i:j])
            i = j
            continue
        if c == '{':
            sofar = ' '.join(''.join(cur['code']).split())
            if cur['depth'] == 0 and re.fullmatch(r'extern\s*"C"', sofar):
                items.append({'kind': 'extern_c', 'start': cur['start'], 'end': i + 1,
                              'line': line_of(cur['start'])})
                cur = None
                i += 1
                continue
            if cur['depth'] == 0 and sofar.endswith(')'):
                cur['body'] = True  # a function definition (static inline)
            cur['depth'] += 1
        elif c == '}':
            cur['depth'] -= 1
            if cur['depth'] < 0:
                raise ParseError(line_of(i), '', "unbalanced '}'")
            if cur['depth'] == 0 and cur['body']:
                cur['code'].append(c)
                end_code(i + 1, True)
                cur = None
                i += 1
                continue
        elif c == ';' and cur['depth'] == 0:
            cur['code'].append(c)
            end_code(i + 1, False)
            cur = None
            i += 1
            continue
        cur['code'].append(c)
        i += 1
    if cur is not None:
        raise ParseError(line_of(cur['start']), repr(' '.join(''.join(cur['code']).split())[:40]),
                         "declaration without its ';' or '}' at the end of the file")
    return items


# --- parsing the declarations ---------------------------------------------------------------

def guess_symbol(code):
    """The name an unparseable declaration most likely declares, for the error message: the
    first lr_/LR_ name called like a function, else the last lr_/LR_ name, else the last name."""
    keywords = ('typedef', 'struct', 'union', 'enum', 'const', 'extern', 'static', 'inline',
                'LR_API', '__attribute__')
    called = [x for x in re.findall(r'(' + IDENT + r')\s*\(', code) if x not in keywords]
    names = [x for x in re.findall(IDENT, code) if x not in keywords]
    for group in ([x for x in called if x.lower().startswith('lr_')],
                  [x for x in names if x.lower().startswith('lr_')][::-1], names[::-1]):
        if group:
            return group[0]
    return repr(code[:40])


def match_paren(code, i, open_='(', close=')'):
    """Index just past the bracket matching code[i], or -1."""
    depth = 0
    for j in range(i, len(code)):
        if code[j] == open_:
            depth += 1
        elif code[j] == close:
            depth -= 1
            if depth == 0:
                return j + 1
    return -1


def split_top(text, sep):
    """text cut at every sep outside (), [] and {}."""
    parts, depth, start = [], 0, 0
    for j, ch in enumerate(text):
        if ch in '([{':
            depth += 1
        elif ch in ')]}':
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(text[start:j])
            start = j + 1
    parts.append(text[start:])
    return parts


ATTR = r'(?:\s*__attribute__\s*\(\(.*\)\))*'


def parse_function(code):
    """'LR_API ret name(params);' or 'LR_API extern type name[...];' -> name, or None."""
    body = code[len('LR_API'):].strip()
    if 'LR_API' in body:
        return None
    p = body.find('(')
    if p < 0:
        m = re.fullmatch(r'extern\s+[\w\s\*]+?\**\s*\b(' + IDENT + r')\s*(\[[^\]]*\]\s*)*;', body)
        return m.group(1) if m else None
    m = re.fullmatch(r'(.*?[\w\*])\s*\b(' + IDENT + r')\s*', body[:p], re.S)
    if not m or not re.fullmatch(r'[\w\s\*]+', m.group(1)) or m.group(2) == '__attribute__':
        return None
    q = match_paren(body, p)
    if q < 0 or not re.fullmatch(ATTR + r'\s*;', body[q:]):
        return None
    return m.group(2)


def check_body(kind, inner):
    """Whether the text between a struct/union/enum's braces is a plausible member list."""
    if kind == 'enum':
        parts = [x.strip() for x in split_top(inner, ',')]
        if parts and parts[-1] == '':
            parts.pop()
        return bool(parts) and all(re.fullmatch(IDENT + r'(\s*=\s*.+)?', x, re.S) for x in parts)
    members = split_top(inner, ';')
    if members[-1].strip() or len(members) < 2:
        return False
    return all(re.search(IDENT + r'\s*(\[[^\]]*\]\s*)*(:\s*\w+\s*)?$|[)}]\s*$', x.strip())
               for x in members[:-1])


def parse_typedef(code):
    """A typedef's name, or None when it is not one of the forms below:
    typedef struct|union|enum [tag] { ... } name;   typedef ret (*name)(params);
    typedef <type> name;   typedef <type> name[N];"""
    m = re.match(r'typedef\s+(struct|union|enum)\b\s*(' + IDENT + r')?\s*\{', code)
    if m:
        b = code.index('{', m.start())
        e = match_paren(code, b, '{', '}')
        if e < 0 or not check_body(m.group(1), code[b + 1:e - 1]):
            return None
        t = re.fullmatch(r'\s*(' + IDENT + r')\s*;', code[e:])
        return t.group(1) if t else None
    m = re.fullmatch(r'typedef\s+([\w\s\*]+?)\s*\(\s*\*\s*(' + IDENT + r')\s*\)\s*(\(.*\))' + ATTR + r'\s*;',
                     code, re.S)
    if m:
        return m.group(2) if match_paren(m.group(3), 0) == len(m.group(3)) else None
    m = re.fullmatch(r'typedef\s+([\w\s\*]*?[\w\*])\s*\b(' + IDENT + r')\s*(\[[^\]]*\]\s*)*;', code)
    if m and re.search(IDENT, m.group(1)):
        return m.group(2)
    return None


def parse_type_definition(code):
    """'struct|union|enum [tag] { ... };' (no typedef) -> its name, or None."""
    m = re.match(r'(struct|union|enum)\b\s*(' + IDENT + r')?\s*\{', code)
    if not m:
        return None
    b = code.index('{')
    e = match_paren(code, b, '{', '}')
    if e < 0 or code[e:].strip() != ';' or not check_body(m.group(1), code[b + 1:e - 1]):
        return None
    if m.group(2):
        return f'{m.group(1)} {m.group(2)}'
    return 'enum { ' + code[b + 1:e - 1].split(',')[0].split('=')[0].strip() + ', … }'


def header_doc(path, rel):
    """(intro, types, decls, errors) of one header. types: [(comment, code block, name)] in
    header order; decls: [(comment, signature, name)]; errors: ['path:line: message: symbol']."""
    with open(path, encoding='utf-8') as f:
        s = f.read()
    m = re.match(r'\s*/\*(.*?)\*/', s, re.S)
    intro = clean_comment(m.group(0)) if m else ''
    try:
        items = scan(s)
    except ParseError as e:
        return intro, [], [], [f'{rel}:{e.line}: {e.what}' + (f' (near {e.symbol})' if e.symbol else '')]
    guard = None
    for it in items:
        if it['kind'] == 'pp':
            g = re.match(r'#\s*ifndef\s+(\w+)', it['raw'])
            if g:
                guard = g.group(1)
            break

    def forward_decl(it):
        return it['kind'] == 'code' and not it['body'] \
            and re.fullmatch(r'(struct|union|enum)\s+' + IDENT + r'\s*;', it['code'])

    def doc_comment(k):
        """The comment that ends on the line above item k (no blank line between), unless it is
        the header's opening comment or ends a line of code. Forward declarations between them
        (struct lr__x;, with their trailing comments) do not count."""
        j, nxt = k - 1, items[k]
        while j >= 0 and ((items[j]['kind'] == 'comment' and items[j]['trailing'])
                          or forward_decl(items[j])):
            if forward_decl(items[j]):
                nxt = items[j]
            j -= 1
        if j < 0 or items[j]['kind'] != 'comment' or items[j]['trailing'] or (j == 0 and intro) \
                or s.count('\n', items[j]['end'], nxt['start']) > 1:
            return ''
        return clean_comment(items[j]['raw'])

    def with_trailing(k, end):
        """The raw text of item k, and the comments that follow it on its last line."""
        text, j = items[k]['raw'], k + 1
        while j < len(items) and items[j]['kind'] == 'comment' and items[j]['trailing'] \
                and '\n' not in s[end:items[j]['start']]:
            text += s[end:items[j]['end']]
            end = items[j]['end']
            j += 1
        return '\n'.join(l.rstrip() for l in text.split('\n'))

    types, decls, errors = [], [], []
    fail = lambda it, sym, what: errors.append(f'{rel}:{it["line"]}: {what}: {sym}')
    k = 0
    while k < len(items):
        it = items[k]
        if it['kind'] == 'pp':
            d = re.match(r'#\s*define\s+(' + IDENT + r')', it['raw'])
            if d and d.group(1) not in (guard, 'LR_API') and not private(d.group(1)):
                comment, lines, names, j = doc_comment(k), [with_trailing(k, it['end'])], [d.group(1)], k + 1
                # #defines on consecutive lines (no blank line, no comment) form one block
                while j < len(items) and items[j]['kind'] == 'pp' \
                        and s[items[j - 1]['end']:items[j]['start']] == '\n':
                    d2 = re.match(r'#\s*define\s+(' + IDENT + r')', items[j]['raw'])
                    if not d2 or d2.group(1) in (guard, 'LR_API') or private(d2.group(1)):
                        break
                    lines.append(with_trailing(j, items[j]['end']))
                    names.append(d2.group(1))
                    j += 1
                types.append((comment, '\n'.join(lines), ', '.join(names)))
                k = j
                continue
        elif it['kind'] == 'code':
            code = it['code']
            if it['body']:
                if not re.match(r'static\s+inline\b', code):
                    fail(it, guess_symbol(code), 'function defined in a public header without '
                         '"static inline"')
            elif re.search(r'\bLR_API\b', code):
                name = parse_function(code) if code.startswith('LR_API ') else None
                if name is None:
                    fail(it, guess_symbol(code), 'cannot parse the LR_API declaration')
                else:
                    sig = ' '.join(it['raw'].replace('LR_API ', '', 1).split())
                    comment = doc_comment(k)
                    if not comment and k + 1 < len(items) and items[k + 1]['kind'] == 'comment' \
                            and items[k + 1]['trailing']:
                        comment = clean_comment(items[k + 1]['raw'])  # LR_API f(void); /* ... */
                    decls.append((comment, sig, name))
            elif code.startswith('typedef '):
                name = parse_typedef(code)
                if name is None:
                    fail(it, guess_symbol(code), 'cannot parse the typedef')
                elif not private(name):
                    types.append((doc_comment(k), with_trailing(k, it['end']), name))
            elif forward_decl(it):
                pass  # a forward declaration: an incomplete type, nothing to show
            elif re.match(r'(struct|union|enum)\b[^;]*\{', code):
                name = parse_type_definition(code)
                if name is None:
                    fail(it, guess_symbol(code), 'cannot parse the type definition')
                elif not private(name.split()[-1]):
                    types.append((doc_comment(k), with_trailing(k, it['end']), name))
            else:
                fail(it, guess_symbol(code), 'declaration that is neither LR_API nor a type '
                     '(api.md would miss it)')
        k += 1
    return intro, types, decls, errors


def headers_under(d):
    """The .h files under directory d, as paths relative to d, sorted."""
    found = []
    for dirpath, dirnames, files in os.walk(d):
        dirnames[:] = sorted(x for x in dirnames if not x.startswith('.'))
        for f in files:
            if f.endswith('.h') and not f.startswith('.'):
                found.append(os.path.relpath(os.path.join(dirpath, f), d).replace(os.sep, '/'))
    return sorted(found)


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
    inc = os.path.join(root, 'include', 'lowrank')
    errors = []
    out = ['# API reference', '',
           'Every public header, layer by layer, with its public types and constants, then every',
           'exported function (generated by `scripts/api_doc.py` from the headers; the conventions',
           'are in [design.md](design.md)).',
           '`#include <lowrank/lowrank.h>` brings in all of them but `mpi/`, which needs MPI.', '']
    layers = [l for l, _ in LAYERS]
    for h in headers_under(inc):
        top = h.split('/')[0]
        if h == UMBRELLA:
            _, types, decls, errs = header_doc(os.path.join(inc, h), f'include/lowrank/{h}')
            errors += errs
            for _, _, name in types + decls:
                errors.append(f'include/lowrank/{h}: declares {name}, but api.md has no section for '
                              f'the umbrella header (move it to a layer\'s header)')
        elif top not in layers:
            errors.append(f'include/lowrank/{h}: not in a layer that scripts/api_doc.py knows '
                          f'({", ".join(layers)}): add the layer to LAYERS')
    for layer, what in LAYERS:
        d = os.path.join(inc, layer)
        if not os.path.isdir(d):
            errors.append(f'include/lowrank/{layer}/: no such layer directory (LAYERS in scripts/api_doc.py)')
            continue
        out += [f'## {layer}: {what}', '']
        for h in headers_under(d):
            rel = f'include/lowrank/{layer}/{h}'
            intro, types, decls, errs = header_doc(os.path.join(d, h), rel)
            errors += errs
            out += [f'### `lowrank/{layer}/{h}`', '']
            if intro:
                first = intro.split('\n\n')[0]
                out += [first.replace('\n', ' '), '']
            for comment, text, _ in types + decls:
                out += ['```c', text, '```']
                if comment:
                    out += [comment.replace('\n', ' '), '']
                else:
                    out += ['']
    if errors:
        for e in errors:
            sys.stderr.write(f'api_doc.py: {e}\n')
        sys.stderr.write(f'api_doc.py: {len(errors)} problem(s); docs/api.md not written\n')
        sys.exit(1)
    sys.stdout.buffer.write(('\n'.join(out).rstrip() + '\n').encode('utf-8'))


main()
