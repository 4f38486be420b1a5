"""The Grafana dashboard (doc/grafana/keystone-sync.json) drawn from a real
run's metrics, without Grafana: a picture for the docs.

Two steps:

``scrape``: read the agents' real ``/metrics`` endpoints (``[metrics]
listen``) every second, as Prometheus would, into a file of JSON lines
(one per scrape: time, target, samples). agent_sync.py ``--scrape FILE``
does this during its several-agents part; standalone::

    python bench/dashboard.py scrape --out scrapes.jsonl \\
        http://127.0.0.1:9464/metrics [...]

``render``: evaluate each panel's query over those scrapes and draw the
panels where the dashboard places them (``gridPos``), with matplotlib::

    python bench/dashboard.py render scrapes.jsonl \\
        --out doc/images/dashboard.png

The queries are evaluated by a small evaluator of the PromQL forms the
dashboard uses, not by Prometheus: ``AGG by (labels) (SELECTOR)``,
``rate()``/``increase()`` of a counter over a window (per series, counter
resets handled, no extrapolation), ``time() - ...`` and ``... == 1``;
``$spoke`` is "All". A panel whose query it does not understand is drawn
empty with "not evaluated" and listed on stderr. Each target is a
Prometheus ``instance``.

``scrape`` needs prometheus_client (the agent's own dependency, there in
the agent's virtualenv); ``render`` needs only matplotlib, which is not a
dependency of the project: install it where you render
(``pip install matplotlib``).
"""

import argparse
import json
import re
import sys
import threading
import time
import urllib.request

# -- scraping -------------------------------------------------------------

def scrape_once(target: str) -> list:
    """The samples ``target`` serves now: ``[name, labels, value]``."""
    from prometheus_client import parser
    with urllib.request.urlopen(target, timeout=5) as resp:
        text = resp.read().decode()
    return [[s.name, s.labels, s.value]
            for family in parser.text_string_to_metric_families(text)
            for s in family.samples]


class Scraper(threading.Thread):
    """Scrape ``targets`` (may be changed while running) every ``every``
    seconds into ``path``; an unreachable target is skipped (a member
    starting or killed), as Prometheus records it as down."""

    def __init__(self, path: str, targets=(), every: float = 1.0):
        super().__init__(daemon=True)
        self.path, self.targets, self.every = path, list(targets), every
        self._halt = threading.Event()

    def run(self):
        with open(self.path, 'a') as out:
            while not self._halt.wait(self.every):
                now = time.time()
                for target in list(self.targets):
                    try:
                        samples = scrape_once(target)
                    except OSError:
                        continue
                    out.write(json.dumps({'t': now, 'target': target,
                                          'samples': samples}) + '\n')
                out.flush()

    def stop(self):
        self._halt.set()
        self.join()


# -- evaluating -----------------------------------------------------------

SELECTOR = re.compile(r'^(\w+)(?:\{([^}]*)\})?$')
RANGE = re.compile(r'^(rate|increase)\((\w+(?:\{[^}]*\})?)\[(\d+)([smh])\]\)$')
AGG = re.compile(r'^(max|sum|min) by \(([^)]*)\) \((.*)\)$')
UNIT = {'s': 1, 'm': 60, 'h': 3600}


class NotUnderstood(Exception):
    pass


def _matchers(text):
    out = []
    for part in filter(None, (p.strip() for p in (text or '').split(','))):
        m = re.match(r'^(\w+)\s*(=~|=)\s*"(.*)"$', part)
        if not m:
            raise NotUnderstood(part)
        name, op, value = m.groups()
        value = '.*' if value == '$spoke' else value
        out.append((name, op, value))
    return out


def _matches(labels, matchers):
    for name, op, value in matchers:
        got = labels.get(name, '')
        if op == '=' and got != value:
            return False
        if op == '=~' and not re.fullmatch(value, got):
            return False
    return True


class Data:
    """The scrapes, as series: (name, instance, labels) -> [(t, v)]."""

    def __init__(self, path):
        self.series, self.times = {}, []
        with open(path) as f:
            for line in f:
                scrape = json.loads(line)
                t = scrape['t']
                if not self.times or self.times[-1] != t:
                    self.times.append(t)
                for name, labels, value in scrape['samples']:
                    key = (name, scrape['target'],
                           tuple(sorted(labels.items())))
                    self.series.setdefault(key, []).append((t, value))

    def instant(self, name, matchers, t, stale=5.0):
        """Each series' last value at ``t`` (none older than ``stale``
        seconds: a target that stopped answering drops out, as in
        Prometheus once its series go stale)."""
        out = []
        for (n, inst, labels), points in self.series.items():
            d = dict(labels, instance=inst)
            if n != name or not _matches(d, matchers):
                continue
            before = [p for p in points if p[0] <= t]
            if before and t - before[-1][0] <= stale:
                out.append((d, before[-1][1]))
        return out

    def ranged(self, func, name, matchers, window, t):
        out = []
        for (n, inst, labels), points in self.series.items():
            d = dict(labels, instance=inst)
            if n != name or not _matches(d, matchers):
                continue
            inside = [v for ts, v in points if t - window <= ts <= t]
            if len(inside) < 2 or t - max(
                    ts for ts, _ in points if ts <= t) > 5.0:
                continue
            grew = sum(b - a if b >= a else b
                       for a, b in zip(inside, inside[1:], strict=False))
            out.append((d, grew / window if func == 'rate' else grew))
        return out


def evaluate(data, expr, t):
    """``expr`` at time ``t``: a list of (labels, value)."""
    expr = expr.strip()
    m = re.match(r'^(.*) == 1$', expr)
    if m:
        return [(d, v) for d, v in evaluate(data, m.group(1), t) if v == 1]
    m = re.match(r'^time\(\) - (.*)$', expr)
    if m:
        return [(d, t - v) for d, v in evaluate(data, m.group(1), t)]
    m = AGG.match(expr)
    if m:
        how, by, inner = m.groups()
        keys = [k.strip() for k in by.split(',')]
        groups = {}
        for d, v in evaluate(data, inner, t):
            key = tuple(d.get(k, '') for k in keys)
            groups.setdefault(key, []).append(v)
        agg = {'max': max, 'min': min, 'sum': sum}[how]
        return [(dict(zip(keys, k, strict=True)), agg(vs))
                for k, vs in groups.items()]
    m = RANGE.match(expr)
    if m:
        func, sel, n, unit = m.groups()
        sm = SELECTOR.match(sel)
        return data.ranged(func, sm.group(1), _matchers(sm.group(2)),
                           int(n) * UNIT[unit], t)
    m = SELECTOR.match(expr)
    if m:
        return data.instant(m.group(1), _matchers(m.group(2)), t)
    raise NotUnderstood(expr)


def legend(fmt, labels):
    return re.sub(r'\{\{\s*(\w+)\s*\}\}',
                  lambda m: labels.get(m.group(1), ''), fmt or '')


# -- drawing --------------------------------------------------------------

def render(scrapes, dashboard_path, out, step=1.0, caption=''):
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib import pyplot as plt

    data = Data(scrapes)
    board = json.load(open(dashboard_path))
    panels = board['panels']
    rows = max(p['gridPos']['y'] + p['gridPos']['h'] for p in panels)
    fig = plt.figure(figsize=(16, (rows + 3) * 0.42), facecolor='#181b1f')
    fig.text(0.01, 1 - 0.6 / (rows + 3), caption or
             f'{board.get("title", "")}: drawn by bench/dashboard.py from '
             f'scrapes of a real run (not a Grafana screenshot)',
             color='#ccccdc', fontsize=11, va='top')
    t0, t1 = data.times[0], data.times[-1]
    times = [t0 + i * step for i in range(int((t1 - t0) / step) + 1)]
    skipped = []
    for p in panels:
        g = p['gridPos']
        top = rows + 3   # a line for the caption, a margin below
        ax = fig.add_axes([g['x'] / 24 + 0.03, 1 - (2 + g['y'] + g['h'])
                           / top + 0.015, g['w'] / 24 - 0.04,
                           g['h'] / top - 0.04], facecolor='#111217')
        ax.set_title(p.get('title', ''), color='#ccccdc', fontsize=9,
                     loc='left')
        ax.tick_params(colors='#8e8e9e', labelsize=7)
        for spine in ax.spines.values():
            spine.set_color('#2c3235')
        try:
            if p.get('type') == 'timeseries':
                _series(ax, data, p, times, t0)
            else:
                _table(ax, data, p, t1)
        except NotUnderstood as e:
            skipped.append(f'{p.get("title")}: {e}')
            ax.text(0.5, 0.5, 'not evaluated', color='#8e8e9e',
                    ha='center', transform=ax.transAxes)
    fig.savefig(out, dpi=80, facecolor=fig.get_facecolor())
    for line in skipped:
        print(f'not evaluated: {line}', file=sys.stderr)
    return skipped


def _series(ax, data, panel, times, t0):
    lines = {}
    for target in panel.get('targets', []):
        for t in times:
            for d, v in evaluate(data, target['expr'], t):
                key = legend(target.get('legendFormat'), d)
                lines.setdefault(key, ([], []))
                lines[key][0].append(t - t0)
                lines[key][1].append(v)
    for key in sorted(lines):
        xs, ys = lines[key]
        ax.plot(xs, ys, linewidth=1, marker='.', markersize=1.5,
                label=key)
    ax.set_xlabel('seconds into the run', color='#8e8e9e', fontsize=7)
    ax.grid(color='#2c3235', linewidth=0.5)
    if lines:
        ax.legend(fontsize=6, loc='upper right', facecolor='#181b1f',
                  labelcolor='#ccccdc', edgecolor='#2c3235')
    else:
        ax.text(0.5, 0.5, 'no data', color='#8e8e9e', ha='center',
                transform=ax.transAxes)


def _table(ax, data, panel, t):
    ax.set_xticks([])
    ax.set_yticks([])
    rows = sorted(legend(target.get('legendFormat'), d)
                  for target in panel.get('targets', [])
                  for d, _ in evaluate(data, target['expr'], t))
    text = '\n'.join(rows) or 'no data'
    size = 11 if panel.get('type') == 'stat' else 8
    ax.text(0.03, 0.95, f'at the end of the run:\n{text}', color='#73bf69'
            if rows else '#8e8e9e', fontsize=size, va='top',
            family='monospace', transform=ax.transAxes)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = parser.add_subparsers(dest='cmd', required=True)
    s = sub.add_parser('scrape')
    s.add_argument('--out', required=True)
    s.add_argument('--every', type=float, default=1.0)
    s.add_argument('--seconds', type=float, default=600)
    s.add_argument('targets', nargs='+')
    r = sub.add_parser('render')
    r.add_argument('scrapes')
    r.add_argument('--dashboard', default='doc/grafana/keystone-sync.json')
    r.add_argument('--out', default='doc/images/dashboard.png')
    r.add_argument('--caption', default='',
                   help='the line above the panels (default: the '
                   "dashboard's title and where the picture comes from)")
    args = parser.parse_args(argv)
    if args.cmd == 'scrape':
        scraper = Scraper(args.out, args.targets, args.every)
        scraper.start()
        try:
            time.sleep(args.seconds)
        except KeyboardInterrupt:
            pass
        scraper.stop()
        return 0
    render(args.scrapes, args.dashboard, args.out, caption=args.caption)
    return 0


if __name__ == '__main__':
    sys.exit(main())
