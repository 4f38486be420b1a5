"""What a batch pays for Keystone's audit notifications when no
notification driver is configured (Keystone's default), with and
without ``writes.notify.audits_built_only_if_heard``, side by side in one
process.

Keystone's own ``notifications.Audit.created`` and ``added_to`` (what a
batch's set-wise writers call per resource), with Keystone's
configuration loaded and its default notifier (no driver); the service
catalog is answered from memory, as ``catalog_read_once`` answers it
within a batch. Rounds alternate plain / skipped; each round emits
``--events`` events.

- ``plain_us_per_event``, ``skipped_us_per_event``: medians over rounds.
- ``ratio``: skipped / plain.

    python bench/notify_cost.py --rounds 10 --events 1000
"""

import argparse
import json
import statistics
import sys
import time
import types


def setup() -> None:
    from keystone import notifications
    import keystone.conf
    keystone.conf.configure()
    keystone.conf.CONF([], project='keystone')
    services = [{'id': 'identity-svc', 'type': 'identity'}]
    notifications._CATALOG_HELPER_OBJ = types.SimpleNamespace(
        catalog_api=types.SimpleNamespace(list_services=lambda: services))


def emit(count: int) -> float:
    from keystone import notifications
    start = time.perf_counter()
    for n in range(count // 2):
        notifications.Audit.created('project', f'p{n}')
        notifications.Audit.added_to('group', f'g{n}', 'user', f'u{n}')
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--rounds', type=int, default=10)
    parser.add_argument('--events', type=int, default=1000)
    args = parser.parse_args(argv)
    setup()
    from keystone_syncext.writes import notify
    if not notify.nothing_heard():
        raise SystemExit('a notification driver is configured here')
    plain, skipped = [], []
    for _ in range(args.rounds):
        plain.append(emit(args.events) / args.events * 1e6)
        with notify.audits_built_only_if_heard():
            skipped.append(emit(args.events) / args.events * 1e6)
    p, s = statistics.median(plain), statistics.median(skipped)
    print(f'per event: plain {p:.1f} us, skipped {s:.1f} us, '
          f'ratio {s / p:.3f}')
    print(json.dumps({'plain_us_per_event': round(p, 1),
                      'skipped_us_per_event': round(s, 1),
                      'ratio': round(s / p, 3), 'rounds': args.rounds,
                      'events': args.events}))
    return 0


if __name__ == '__main__':
    sys.exit(main())
