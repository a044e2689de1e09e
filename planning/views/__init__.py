"""The planning pages, in four modules: `pages` (plan list, board, activity, settings, plan
files), `people` (members, invitations), `editing` (items in place, conflicts, comments) and
`live` (the event stream)."""

from .editing import comments, item_delete, item_edit, item_move, item_new, item_view
from .live import events, presence
from .pages import (
    activity,
    activity_revert,
    board,
    home,
    new_plan,
    plan_file,
    plan_list,
    plan_settings,
)
from .people import invitation, invitation_account, invitation_change, member_change, members

__all__ = [
    "activity",
    "activity_revert",
    "board",
    "comments",
    "events",
    "home",
    "invitation",
    "invitation_account",
    "invitation_change",
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
