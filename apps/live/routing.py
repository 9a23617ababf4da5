from django.urls import path

from . import consumers

websocket_urlpatterns = [
    path("ws/fleet/", consumers.FleetConsumer.as_asgi()),
    path("ws/rollouts/", consumers.RolloutsConsumer.as_asgi()),
    path("ws/rollouts/<int:rollout_id>/", consumers.RolloutConsumer.as_asgi()),
    path("ws/wall/", consumers.WallConsumer.as_asgi()),
]
