"""Workflows across the planning models, in four modules: `plans` (new plans, the re-test
schedule, the activity record), `editing` (versioned saves, conflicts, revert), `people`
(members, comments) and `invitations` (how people join). Services never see `request`, nor
answer in HTTP: who may see or change a plan is views/access.py."""

from .editing import (
    EDITABLE,
    MODELS,
    Conflict,
    RevertError,
    changed_fields,
    create_item,
    delete_item,
    kind_of,
    label_of,
    move_item,
    revert_activity,
    save_item,
    snapshot,
)
from .people import (
    MemberError,
    add_comment,
    change_member,
    mentioned_members,
    remove_member,
)
from .plans import (
    User,
    add_stages,
    create_plan,
    plans_for_user,
    record_activity,
    save_period,
    save_schedule,
    start_plan,
)

__all__ = [
    "EDITABLE",
    "MODELS",
    "Conflict",
    "MemberError",
    "RevertError",
    "User",
    "add_comment",
    "add_stages",
    "change_member",
    "changed_fields",
    "create_item",
    "create_plan",
    "delete_item",
    "kind_of",
    "label_of",
    "mentioned_members",
    "move_item",
    "plans_for_user",
    "record_activity",
    "remove_member",
    "revert_activity",
    "save_item",
    "save_period",
    "save_schedule",
    "snapshot",
    "start_plan",
]
