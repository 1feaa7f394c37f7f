"""osmini_ml2 - an ML2 mechanism driver that binds ports without an agent.

Loaded by the REAL neutron-server (Debian 12 neutron-server 21.0.0, ML2 core plugin) as mechanism
driver `osmini` through the `neutron.ml2.mechanism_drivers` entry point that openstack-up.sh
installs next to this module. There is no data plane on the loopback cloud (Nova runs its fake
virt driver, which plugs nothing), so the only thing missing from a stock Neutron is an agent
that would report the host's bridge mappings: this driver binds every port on a `flat` or `vlan`
segment (the type drivers the loopback cloud enables) and marks it ACTIVE. Everything else -
networks, segments, segmentation ids, IPAM, MAC handling, policy, quotas, the Nova
notifications - is upstream Neutron code.
"""
from neutron_lib import constants
from neutron_lib.api.definitions import portbindings
from neutron_lib.plugins.ml2 import api
from oslo_log import log

LOG = log.getLogger(__name__)
BINDABLE = ("flat", "vlan")


class OsminiMechanismDriver(api.MechanismDriver):
    """Binds ports on flat/vlan segments with vif_type 'other' (no agent, no data plane)."""

    def initialize(self):
        LOG.info("osmini: agentless binding for network types %s", ", ".join(BINDABLE))

    def bind_port(self, context):
        for segment in context.segments_to_bind:
            if segment[api.NETWORK_TYPE] in BINDABLE:
                context.set_binding(segment[api.ID], portbindings.VIF_TYPE_OTHER,
                                    {portbindings.CAP_PORT_FILTER: False},
                                    status=constants.PORT_STATUS_ACTIVE)
                LOG.debug("osmini: bound port %s on %s segment %s", context.current["id"],
                          segment[api.NETWORK_TYPE], segment.get(api.SEGMENTATION_ID))
                return
        LOG.warning("osmini: port %s has no flat/vlan segment to bind", context.current["id"])
