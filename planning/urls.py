from django.urls import path

from . import views

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
    path(
        "<slug:slug>/choices/<int:parent_pk>/assumptions/new/",
        views.item_new,
        {"kind": "assumption"},
        name="assumption_new",
    ),
]

# The same editing views for each kind of item: /plans/<slug>/<kind>s/new/, …/<pk>/edit/ …
for kind, plural in [
    ("choice", "choices"),
    ("assumption", "assumptions"),
    ("initiative", "initiatives"),
    ("stage", "stages"),
]:
    if kind != "assumption":  # a new assumption is always under its choice (above)
        urlpatterns.append(
            path(f"<slug:slug>/{plural}/new/", views.item_new, {"kind": kind}, name=f"{kind}_new")
        )
    urlpatterns += [
        path(f"<slug:slug>/{plural}/<int:pk>/", views.item_view, {"kind": kind}, name=f"{kind}"),
        path(
            f"<slug:slug>/{plural}/<int:pk>/edit/",
            views.item_edit,
            {"kind": kind},
            name=f"{kind}_edit",
        ),
        path(
            f"<slug:slug>/{plural}/<int:pk>/delete/",
            views.item_delete,
            {"kind": kind},
            name=f"{kind}_delete",
        ),
        path(
            f"<slug:slug>/{plural}/<int:pk>/move/",
            views.item_move,
            {"kind": kind},
            name=f"{kind}_move",
        ),
    ]
    if kind in {"choice", "assumption"}:
        urlpatterns.append(
            path(
                f"<slug:slug>/{plural}/<int:pk>/comments/",
                views.comments,
                {"kind": kind},
                name=f"{kind}_comments",
            )
        )
