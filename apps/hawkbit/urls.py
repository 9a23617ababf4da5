"""Two URL lists: the DDI API (mounted at <str:tenant>/controller/v1/) and the Management API (rest/v1/)."""

from django.urls import path

from . import ddi, mgmt

ddi_urlpatterns = [
    path("<str:controller_id>", ddi.base, name="hawkbit-ddi-base"),
    path("<str:controller_id>/deploymentBase/<int:action_id>", ddi.deployment_base, name="hawkbit-ddi-deployment"),
    path("<str:controller_id>/deploymentBase/<int:action_id>/feedback", ddi.deployment_feedback,
         name="hawkbit-ddi-deployment-feedback"),
    path("<str:controller_id>/cancelAction/<int:action_id>", ddi.cancel_action, name="hawkbit-ddi-cancel"),
    path("<str:controller_id>/cancelAction/<int:action_id>/feedback", ddi.cancel_feedback,
         name="hawkbit-ddi-cancel-feedback"),
    path("<str:controller_id>/installedBase/<int:action_id>", ddi.installed_base, name="hawkbit-ddi-installed"),
    path("<str:controller_id>/configData", ddi.config_data, name="hawkbit-ddi-config-data"),
    path("<str:controller_id>/softwaremodules/<int:module_id>/artifacts/<str:filename>", ddi.artifact_download,
         name="hawkbit-ddi-artifact"),
]

mgmt_urlpatterns = [
    path("system/configs/<str:key>", mgmt.system_config, name="hawkbit-mgmt-config"),
    path("targets", mgmt.targets, name="hawkbit-mgmt-targets"),
    path("targets/<str:controller_id>", mgmt.target, name="hawkbit-mgmt-target"),
    path("targets/<str:controller_id>/attributes", mgmt.target_attributes, name="hawkbit-mgmt-target-attributes"),
    path("targets/<str:controller_id>/actions", mgmt.target_actions, name="hawkbit-mgmt-target-actions"),
    path("targets/<str:controller_id>/actions/<int:action_id>", mgmt.action, name="hawkbit-mgmt-action"),
    path("targets/<str:controller_id>/actions/<int:action_id>/status", mgmt.action_status,
         name="hawkbit-mgmt-action-status"),
    path("softwaremodules", mgmt.modules, name="hawkbit-mgmt-modules"),
    path("softwaremodules/<int:module_id>", mgmt.module, name="hawkbit-mgmt-module"),
    path("softwaremodules/<int:module_id>/artifacts", mgmt.artifacts, name="hawkbit-mgmt-artifacts"),
    path("distributionsets", mgmt.sets, name="hawkbit-mgmt-sets"),
    path("distributionsets/<int:set_id>", mgmt.distribution_set, name="hawkbit-mgmt-set"),
    path("distributionsets/<int:set_id>/assignedTargets", mgmt.assigned_targets, name="hawkbit-mgmt-set-assign"),
]
