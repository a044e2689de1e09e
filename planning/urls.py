from django.urls import path

from . import views
from .kinds import KINDS
from .sessions import views as sessions

app_name = "planning"

urlpatterns = [
    path("", views.plan_list, name="plan_list"),
    path("new/", views.new_plan, name="new_plan"),
    path("<slug:slug>/", views.board, name="board"),
    path("<slug:slug>/members/", views.members, name="members"),
    path("<slug:slug>/members/<int:pk>/", views.member_change, name="member_change"),
    path("<slug:slug>/invitations/<int:pk>/", views.invitation_change, name="invitation_change"),
    path("<slug:slug>/activity/", views.activity, name="activity"),
    path("<slug:slug>/settings/", views.plan_settings, name="settings"),
    path("<slug:slug>/plan.json", views.plan_file, name="plan_file"),
    path("<slug:slug>/events/", views.events, name="events"),
    path("<slug:slug>/presence/", views.presence, name="presence"),
    path("<slug:slug>/activity/<int:pk>/revert/", views.activity_revert, name="activity_revert"),
    # Workshop sessions (DOMAIN §11): the plan's sessions, the room, its actions, the summary.
    path("<slug:slug>/sessions/", sessions.sessions, name="sessions"),
    path("<slug:slug>/sessions/<int:pk>/", sessions.session_room, name="session"),
    path(
        "<slug:slug>/sessions/<int:pk>/summary/",
        sessions.session_summary,
        name="session_summary",
    ),
    path("<slug:slug>/sessions/<int:pk>/summary.pdf", sessions.session_pdf, name="session_pdf"),
    path(
        "<slug:slug>/sessions/<int:pk>/<slug:action>/",
        sessions.session_action,
        name="session_action",
    ),
]

# The same editing views for each kind of item (planning/kinds.py): /plans/<slug>/<plural>/new/
# (under its parent for a kind that has one), …/<pk>/, …/<pk>/edit/, delete/, move/, comments/.
for kind in KINDS.values():
    extra = {"kind": kind.name}
    item = f"<slug:slug>/{kind.plural}/<int:pk>/"
    if kind.parent:
        parent = KINDS[kind.parent]
        new = f"<slug:slug>/{parent.plural}/<int:parent_pk>/{kind.plural}/new/"
    else:
        new = f"<slug:slug>/{kind.plural}/new/"
    urlpatterns += [
        path(new, views.item_new, extra, name=f"{kind.name}_new"),
        path(item, views.item_view, extra, name=kind.name),
        path(item + "edit/", views.item_edit, extra, name=f"{kind.name}_edit"),
        path(item + "delete/", views.item_delete, extra, name=f"{kind.name}_delete"),
        path(item + "move/", views.item_move, extra, name=f"{kind.name}_move"),
    ]
    if kind.comments:
        urlpatterns.append(
            path(item + "comments/", views.comments, extra, name=f"{kind.name}_comments")
        )
