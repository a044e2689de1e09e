"""Workshop sessions (DOMAIN §11): the facilitator runs the room on the real plan.

- `agenda`: the templates a session starts from, and editing its steps.
- `room`: starting, moving the room from step to step, the shared timer, ending; every change
  the screens in the room must follow raises the session's revision and signals the plan's
  open streams (planning/live), which tell each screen to re-fetch its own view of the room.
- `writing`: private items in brainstorm steps, the reveal that makes them plan items, merging.
- `voting`: dot votes with their caps, hidden until the reveal, then ranked.
- `mapping`: positions on importance × evidence, settled by the facilitator into the plan.
- `deciding`: adopt or reject a choice, name an owner; each a plan change like any other.
- `summary`: what the session decided, as a page, a PDF and an e-mail.

The models are in planning/models/sessions.py; the views in planning/sessions/views.py.
"""
