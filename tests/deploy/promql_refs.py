"""Finds the metric names, label matchers and grouping labels a PromQL
expression refers to, without a full PromQL parser.

Syntax errors are promtool's job (check_dashboard.py feeds every query to
`promtool check rules`); this module only has to classify identifiers:
function/aggregator calls, label lists of by/without/on/ignoring/group_*,
label matchers inside {...}, keywords, and everything else as a metric name.
It also expands the Grafana variables the dashboard uses.
"""

import dataclasses
import re

# PromQL functions of Prometheus 2.x, plus Grafana's label_values helper which
# is handled separately (its second argument is a label).
FUNCTIONS = frozenset("""
abs absent absent_over_time acos acosh asin asinh atan atanh avg_over_time ceil
changes clamp clamp_max clamp_min cos cosh count_over_time days_in_month
day_of_month day_of_week day_of_year deg delta deriv exp floor
histogram_count histogram_fraction histogram_quantile histogram_stddev
histogram_stdvar histogram_sum holt_winters hour idelta increase irate
label_join label_replace last_over_time ln log10 log2 mad_over_time
max_over_time min_over_time minute month pi predict_linear
present_over_time quantile_over_time rad rate resets round scalar sgn sin
sinh sort sort_desc sqrt stddev_over_time stdvar_over_time sum_over_time tan
tanh time timestamp vector year start end
""".split())
AGGREGATORS = frozenset(
    "sum min max avg group stddev stdvar count count_values bottomk topk "
    "quantile limitk limit_ratio".split())
GROUPING = frozenset("by without on ignoring group_left group_right".split())
KEYWORDS = frozenset("and or unless bool offset inf nan atan2".split())

# Labels that Prometheus (scrape config, Operator monitors) attaches to every
# target; queries may match or group on them for any metric.
TARGET_LABELS = frozenset(
    "namespace pod instance job service container endpoint".split())

_TOKEN_RE = re.compile(r"""
   (?P<ws>\s+)
 | (?P<str>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
 | (?P<dur>\d+(?:ms|s|m|h|d|w|y)(?:\d+(?:ms|s|m|h|d|w|y))*)(?![A-Za-z0-9_.])
 | (?P<num>0x[0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
 | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
 | (?P<op>=~|!~|!=|==|<=|>=|[-+*/%^<>=(){}\[\],:@])
""", re.VERBOSE)

# Grafana's interval macros become a fixed duration; user variables inside
# strings stay harmless text.
_GRAFANA_INTERVAL_RE = re.compile(r"\$__(?:rate_interval|interval|range)\b|\$\{__(?:rate_interval|interval|range)\}")
_GRAFANA_VAR_RE = re.compile(r"\$\{[A-Za-z0-9_:]+\}|\$[A-Za-z_][A-Za-z0-9_]*|\[\[[A-Za-z0-9_]+\]\]")


def expand_grafana(expr, interval="5m", var_value="var"):
    """Returns expr with $__rate_interval & co. replaced by `interval` and every
    other $variable by `var_value`."""
    expr = _GRAFANA_INTERVAL_RE.sub(interval, expr)
    return _GRAFANA_VAR_RE.sub(var_value, expr)


@dataclasses.dataclass
class Matcher:
    label: str
    op: str
    value: str


@dataclasses.dataclass
class Refs:
    """What one expression refers to."""
    selectors: list = dataclasses.field(default_factory=list)  # (metric, [Matcher])
    grouping_labels: set = dataclasses.field(default_factory=set)
    errors: list = dataclasses.field(default_factory=list)

    @property
    def metrics(self):
        return {name for name, _ in self.selectors if name}


def tokenize(expr):
    """Yields (kind, text); raises ValueError on a character PromQL has no use for."""
    pos = 0
    out = []
    while pos < len(expr):
        m = _TOKEN_RE.match(expr, pos)
        if not m:
            raise ValueError(f"unexpected character {expr[pos]!r} at {pos}")
        pos = m.end()
        if m.lastgroup != "ws":
            out.append((m.lastgroup, m.group()))
    return out


def _unquote(s):
    if s[0] == "`":
        return s[1:-1]
    return bytes(s[1:-1], "utf-8").decode("unicode_escape")


def _parse_matchers(toks, i, refs):
    """toks[i] is '{'. Returns (matchers, index after '}')."""
    matchers = []
    i += 1
    while i < len(toks) and toks[i][1] != "}":
        if toks[i][1] == ",":
            i += 1
            continue
        if (i + 2 >= len(toks) or toks[i][0] != "ident" or toks[i + 1][1] not in ("=", "!=", "=~", "!~")
                or toks[i + 2][0] != "str"):
            refs.errors.append(f"malformed label matcher near {' '.join(t for _, t in toks[i:i + 3])!r}")
            return matchers, len(toks)
        matchers.append(Matcher(toks[i][1], toks[i + 1][1], _unquote(toks[i + 2][1])))
        i += 3
    return matchers, i + 1


def _parse_label_list(toks, i, refs):
    """toks[i] is '('. Returns (labels, index after ')')."""
    labels = []
    i += 1
    while i < len(toks) and toks[i][1] != ")":
        if toks[i][0] == "ident":
            labels.append(toks[i][1])
        elif toks[i][1] != ",":
            refs.errors.append(f"unexpected {toks[i][1]!r} in a label list")
        i += 1
    return labels, i + 1


def refs_of(expr):
    """Returns the Refs of one PromQL expression (Grafana variables expanded)."""
    refs = Refs()
    try:
        toks = tokenize(expand_grafana(expr))
    except ValueError as e:
        refs.errors.append(str(e))
        return refs
    i = 0
    while i < len(toks):
        kind, text = toks[i]
        nxt = toks[i + 1][1] if i + 1 < len(toks) else None
        if kind == "ident":
            if text in GROUPING:
                if nxt == "(":
                    labels, i = _parse_label_list(toks, i + 1, refs)
                    refs.grouping_labels.update(labels)
                    continue
                if text in ("group_left", "group_right"):
                    i += 1
                    continue
                refs.errors.append(f"{text} without a label list")
            elif text in AGGREGATORS and nxt in ("(", "by", "without"):
                pass
            elif nxt == "(":
                if text not in FUNCTIONS:
                    refs.errors.append(f"unknown function {text}()")
            elif text in KEYWORDS:
                pass
            else:
                matchers = []
                if nxt == "{":
                    matchers, i = _parse_matchers(toks, i + 1, refs)
                    refs.selectors.append((text, matchers))
                    continue
                refs.selectors.append((text, matchers))
        elif text == "{":
            matchers, i = _parse_matchers(toks, i, refs)
            names = [m.value for m in matchers if m.label == "__name__"]
            refs.selectors.append((names[0] if names else None, matchers))
            continue
        i += 1
    return refs


_LABEL_VALUES_RE = re.compile(r"^\s*label_values\(\s*(?:(?P<expr>.*\S)\s*,\s*)?(?P<label>[A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$")


def split_label_values(query):
    """For a Grafana `label_values(expr, label)` query returns (expr or None,
    label); for anything else (None, None)."""
    m = _LABEL_VALUES_RE.match(query)
    if not m:
        return None, None
    return m.group("expr"), m.group("label")
