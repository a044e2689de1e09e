"""`{{ user|display_name }}`: a person as the app names them everywhere (their full name, else
their username), the same words as `planning.models.display_name` gives Python code."""

from __future__ import annotations

from django import template

from ..models import display_name

register = template.Library()
register.filter("display_name", display_name)
