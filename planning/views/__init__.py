"""The planning pages, in three modules: `pages` (plan list, board, members, activity, settings,
plan files), `editing` (items in place, conflicts, comments) and `live` (the event stream)."""

from .editing import comments, item_delete, item_edit, item_move, item_new, item_view
from .live import events, presence
from .pages import (
    activity,
    activity_revert,
    board,
    home,
    member_change,
    members,
    new_plan,
    plan_file,
    plan_list,
    plan_settings,
)

__all__ = [
    "activity",
    "activity_revert",
    "board",
    "comments",
    "events",
    "home",
    "item_delete",
    "item_edit",
    "item_move",
    "item_new",
    "item_view",
    "member_change",
    "members",
    "new_plan",
    "plan_file",
    "plan_list",
    "plan_settings",
    "presence",
]
