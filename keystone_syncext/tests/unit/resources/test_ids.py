"""The id checks every write path makes (``resources.ids``): the printable
ASCII ids, which are every id Keystone makes, skip the per-character
look, and nothing else changes."""

import unicodedata

from keystone_syncext.resources import ids


def _refused_by_a_character(id_):
    """The per-character rule alone, as every id was once judged."""
    for char in id_:
        if unicodedata.category(char) in ('Cc', 'Cf', 'Zl', 'Zp') or \
                char.isspace():
            return True
    return False


def test_every_character_of_the_first_planes_is_judged_as_one_by_one():
    for code in range(0x3100):
        id_ = f'a{chr(code)}b'
        why = ids.unsafe(id_)
        refused = _refused_by_a_character(id_)
        assert (why is not None and 'character U+' in why) == refused, (
            hex(code), why)
        if not refused:
            assert why in (None, 'contains "/"') or 'percent' in why, (
                hex(code), why)


def test_ascii_refusals_keep_their_message():
    assert ids.unsafe('a\x7fb') == 'contains the control character U+007F'
    assert ids.unsafe('a b') == ('contains the white space character '
                                 'U+0020')
    assert ids.unsafe('a\x1cb') == 'contains the control character U+001C'
    assert ids.unsafe('a\u202eb') == ('contains the formatting character '
                                      'U+202E')
    assert ids.unsafe('a\u2028b') == ('contains the line separator '
                                      'character U+2028')


def test_keystone_ids_pass_and_others_get_their_form():
    assert ids.check('project', 'ab' * 16, ids.KEYSTONE,
                     ids.KEYSTONE_FORM) is None
    message = ids.check('project', 'AB' * 16, ids.KEYSTONE,
                        ids.KEYSTONE_FORM)
    assert message == (f"invalid project id '{'AB' * 16}': is not of the "
                       'form Keystone gives project ids: '
                       + ids.KEYSTONE_FORM)
    assert ids.check('project', 'ab' * 16 + 'x', ids.KEYSTONE,
                     ids.KEYSTONE_FORM) is not None
