#!/usr/bin/env python3
"""Microsoft's own Python SDK (azure-identity, azure-mgmt-compute, azure-mgmt-network) drives
the ARM stand-in through a VM lifecycle, with the SDK's long-running-operation pollers doing
the waiting (Azure-AsyncOperation / Location / Retry-After): sign in with a client secret,
copy a disk, read a gallery image version and make an OS disk from it, create a NIC and a VM
on them, deallocate, start, power off, snapshot, a gallery image definition + version (a
polyvisor template), sign in with a certificate (CertificateCredential), delete everything.
Request bodies are REST-shaped (as in the spec examples). Any shape the SDK cannot deserialize, any LRO it cannot follow, fails the run (exit 1).

Usage: sdk_scenario.py URL CA_FILE CONFIG_JSON GALLERY IMAGE
(CONFIG_JSON: the stand-in's own config with ids and secret; GALLERY/IMAGE: a seeded
specialized image with version 1.0.0)
"""

import json
import os
import sys
import time


def main():
    url, ca, conf_path, gallery, image = sys.argv[1:6]
    conf = dict(json.load(open(conf_path)), gallery=gallery, image=image)
    pem = os.path.join(os.path.dirname(os.path.abspath(conf_path)), "client.pem")
    if conf.get("client_certificate") and os.path.exists(pem):
        conf["client_pem"] = pem
    os.environ["REQUESTS_CA_BUNDLE"] = ca  # requests (azure-core's transport, MSAL) trusts the stand-in CA
    from azure.identity import ClientSecretCredential
    from azure.mgmt.compute import ComputeManagementClient
    from azure.mgmt.network import NetworkManagementClient

    cred = ClientSecretCredential(conf["tenant_id"], conf["client_id"], conf["client_secret"], authority=url,
                                  disable_instance_discovery=True)
    kw = {"base_url": url, "credential_scopes": [url + "/.default"], "polling_interval": 0.2}
    compute = ComputeManagementClient(cred, conf["subscription_id"], **kw)
    disks = compute
    network = NetworkManagementClient(cred, conf["subscription_id"], **kw)
    # The api-versions polyvisor pins (the SDK's defaults are newer; the stand-in serves only these),
    # passed per operation as the SDK allows.
    VM, DISK, NIC = {"api_version": "2024-07-01"}, {"api_version": "2024-03-02"}, {"api_version": "2024-03-01"}
    rg, loc = conf["resource_group"], conf["location"]
    t0 = time.time()

    src = compute.virtual_machines.get(rg, "pv-src", **VM)
    assert "/disks/pv-src-osdisk" in src.storage_profile.os_disk.managed_disk.id, src.storage_profile
    listed = [v.name for v in compute.virtual_machines.list(rg, **VM)]
    assert {"pv-src", "pv-tpl", "web-01"} <= set(listed), listed
    statuses = {v.name: [s.code for s in v.instance_view.statuses] for v in compute.virtual_machines.list_all(status_only="true", **VM)}
    assert "PowerState/running" in statuses["web-01"], statuses

    # A copy of an existing OS disk ...
    copy = disks.disks.begin_create_or_update(rg, "sdk-copy", {
        "location": loc, "sku": {"name": "StandardSSD_LRS"},
        "properties": {"creationData": {"createOption": "Copy", "sourceResourceId": src.storage_profile.os_disk.managed_disk.id}},
    }, **DISK).result()
    assert copy.provisioning_state == "Succeeded" and copy.disk_size_gb == 30, copy
    # ... and the VM's OS disk from an Azure Compute Gallery image version.
    GAL = {"api_version": "2023-07-03"}
    image = compute.gallery_images.get(rg, conf["gallery"], conf["image"], **GAL)
    assert image.os_state == "Specialized" and image.os_type == "Linux", image
    version = compute.gallery_image_versions.get(rg, conf["gallery"], conf["image"], "1.0.0", **GAL)
    assert version.provisioning_state == "Succeeded", version
    disk = disks.disks.begin_create_or_update(rg, "sdk-osdisk", {
        "location": loc, "sku": {"name": "StandardSSD_LRS"},
        "properties": {"creationData": {"createOption": "FromImage", "galleryImageReference": {"id": version.id}}},
    }, **DISK).result()
    assert disk.provisioning_state == "Succeeded" and disk.os_type == "Linux", disk
    subnet = network.network_interfaces.get(rg, "pv-src-nic", **NIC).ip_configurations[0].subnet.id
    nic = network.network_interfaces.begin_create_or_update(rg, "sdk-nic", {
        "location": loc, "properties": {"ipConfigurations": [{"name": "ipconfig1", "properties": {"subnet": {"id": subnet}}}]},
    }, **NIC).result()
    assert nic.provisioning_state == "Succeeded" and nic.mac_address, nic
    vm = compute.virtual_machines.begin_create_or_update(rg, "sdk-vm", {
        "location": loc, "tags": {"made-by": "sdk"},
        "properties": {
            "hardwareProfile": {"vmSize": "Standard_B1s"},
            "storageProfile": {"osDisk": {"createOption": "Attach", "osType": "Linux", "managedDisk": {"id": disk.id}}},
            "networkProfile": {"networkInterfaces": [{"id": nic.id, "properties": {"primary": True}}]},
        },
    }, **VM).result()
    assert vm.provisioning_state == "Succeeded", vm

    def power(name):
        v = compute.virtual_machines.get(rg, name, expand="instanceView", **VM)
        return [s.code for s in v.instance_view.statuses if s.code.startswith("PowerState/")][0]

    assert power("sdk-vm") == "PowerState/running"
    compute.virtual_machines.begin_deallocate(rg, "sdk-vm", **VM).result()
    assert power("sdk-vm") == "PowerState/deallocated"
    compute.virtual_machines.begin_start(rg, "sdk-vm", **VM).result()
    assert power("sdk-vm") == "PowerState/running"
    compute.virtual_machines.begin_power_off(rg, "sdk-vm", **VM).result()
    assert power("sdk-vm") == "PowerState/stopped"

    snap = disks.snapshots.begin_create_or_update(rg, "sdk-snap", {
        "location": loc, "properties": {"creationData": {"createOption": "Copy", "sourceResourceId": disk.id}},
    }, **DISK).result()
    assert snap.provisioning_state == "Succeeded", snap
    assert "sdk-snap" in [s.name for s in disks.snapshots.list_by_resource_group(rg, **DISK)]

    # Deleting an attached disk is refused (409) until the VM is gone.
    from azure.core.exceptions import HttpResponseError, ResourceExistsError
    try:
        disks.disks.begin_delete(rg, "sdk-osdisk", **DISK).result()
        raise AssertionError("deleting an attached disk must fail")
    except (HttpResponseError, ResourceExistsError) as e:
        assert e.status_code == 409, e

    # A template the way polyvisor keeps one: a gallery image definition and an image version
    # made from a managed disk, each followed through the SDK's pollers, then deleted.
    gal = conf["gallery"]
    img = compute.gallery_images.begin_create_or_update(rg, gal, "sdk-tpl", {
        "location": loc, "tags": {"polyvisor-created": "true", "polyvisor-vm": "sdk-vm", "polyvisor-template": "true"},
        "properties": {"osType": "Linux", "osState": "Specialized", "hyperVGeneration": "V2",
                       "identifier": {"publisher": "polyvisor", "offer": "template", "sku": "sdk-vm"}},
    }, **GAL).result()
    assert img.provisioning_state == "Succeeded" and img.tags["polyvisor-template"] == "true", img
    ver = compute.gallery_image_versions.begin_create_or_update(rg, gal, "sdk-tpl", "1.0.1", {
        "location": loc, "tags": {"polyvisor-snapshot": "RAS_TEMPLATE_VERSION_1"},
        "properties": {"publishingProfile": {"targetRegions": [{"name": loc, "regionalReplicaCount": 1}]},
                       "storageProfile": {"osDiskImage": {"source": {"id": disk.id}}}},
    }, **GAL).result()
    assert ver.provisioning_state == "Succeeded" and ver.storage_profile.os_disk_image.size_in_gb == 30, ver
    assert [v.name for v in compute.gallery_image_versions.list_by_gallery_image(rg, gal, "sdk-tpl", **GAL)] == ["1.0.1"]
    compute.gallery_image_versions.begin_delete(rg, gal, "sdk-tpl", "1.0.1", **GAL).result()
    compute.gallery_images.begin_delete(rg, gal, "sdk-tpl", **GAL).result()
    assert "sdk-tpl" not in [i.name for i in compute.gallery_images.list_by_gallery(rg, gal, **GAL)]

    # The certificate credential: azure-identity's CertificateCredential (MSAL signs the
    # client assertion) is accepted by the stand-in's token endpoint, which verifies it.
    if conf.get("client_pem"):
        from azure.identity import CertificateCredential
        cert_cred = CertificateCredential(conf["tenant_id"], conf["client_id"], conf["client_pem"], authority=url,
                                          disable_instance_discovery=True)
        by_cert = ComputeManagementClient(cert_cred, conf["subscription_id"], **kw)
        assert by_cert.virtual_machines.get(rg, "pv-src", **VM).name == "pv-src"

    compute.virtual_machines.begin_delete(rg, "sdk-vm", **VM).result()
    disks.snapshots.begin_delete(rg, "sdk-snap", **DISK).result()
    network.network_interfaces.begin_delete(rg, "sdk-nic", **NIC).result()
    disks.disks.begin_delete(rg, "sdk-osdisk", **DISK).result()
    disks.disks.begin_delete(rg, "sdk-copy", **DISK).result()
    left = [v.name for v in compute.virtual_machines.list(rg, **VM)]
    assert "sdk-vm" not in left, left
    print(json.dumps({"ok": True, "seconds": round(time.time() - t0, 2)}))


if __name__ == "__main__":
    main()
