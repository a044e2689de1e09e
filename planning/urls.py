from django.urls import path

from . import views

app_name = "planning"

urlpatterns = [
    path("", views.plan_list, name="plan_list"),
    path("new/", views.new_plan, name="new_plan"),
    path("<slug:slug>/", views.board, name="board"),
    path("<slug:slug>/members/", views.members, name="members"),
    path("<slug:slug>/activity/", views.activity, name="activity"),
    path("<slug:slug>/settings/", views.plan_settings, name="settings"),
    path("<slug:slug>/plan.json", views.plan_file, name="plan_file"),
]
