# Added by tools/record_games/renpy_vn.py to a copy of a Ren'Py game's folder (the game itself is
# not changed): it writes which screen is showing to $MOODSCORE_STATE_LOG on every change, so
# each captured frame is labelled by what Ren'Py itself displays, and it sets the window size
# from $MOODSCORE_WINDOW ("WxH").

init 1000 python:
    import os as _ms_os
    import time as _ms_time

    _ms_log = _ms_os.environ.get("MOODSCORE_STATE_LOG")
    _ms_last = [None]

    # Checked in this order: an overlay (a confirmation) over a menu is the overlay.
    _MS_MENUS = ("confirm", "preferences", "save", "load", "history", "about", "help",
                 "tutorials", "main_menu")

    def _ms_state():
        for name in _MS_MENUS:
            if renpy.get_screen(name):
                return name
        if renpy.get_screen("choice"):
            return "choice"
        if renpy.get_screen("say") or renpy.get_screen("nvl"):
            return "say"
        return "scene"

    def _ms_periodic():
        state = _ms_state()
        if state != _ms_last[0]:
            _ms_last[0] = state
            with open(_ms_log, "a") as handle:
                handle.write("%.3f %s\n" % (_ms_time.time(), state))

    if _ms_log:
        config.periodic_callbacks.append(_ms_periodic)

    _ms_window = _ms_os.environ.get("MOODSCORE_WINDOW")
    if _ms_window:
        _ms_w, _ms_h = (int(v) for v in _ms_window.split("x"))
        _preferences.physical_size = (_ms_w, _ms_h)
        _preferences.fullscreen = False
    # No "quit?" prompt and no autosave pauses in a recording.
    config.quit_action = Quit(confirm=False)
    config.has_autosave = False
