class ManageIQ::Providers::__NAME__::Inventory::Persister < ManageIQ::Providers::Inventory::Persister
  def initialize_inventory_collections
    add_collection(infra, :clusters)
    add_collection(infra, :hosts)
    add_collection(infra, :storages)
    add_collection(infra, :disks, :parent_inventory_collections => %i[vms_and_templates])
    add_collection(infra, :guest_devices, :parent_inventory_collections => %i[vms_and_templates])
    add_collection(infra, :hardwares, :parent_inventory_collections => %i[vms_and_templates])
    add_collection(infra, :networks, :parent_inventory_collections => %i[vms_and_templates])
    add_collection(infra, :operating_systems, :parent_inventory_collections => %i[vms_and_templates])
    add_collection(infra, :snapshots, :parent_inventory_collections => %i[vms_and_templates])
    add_collection(infra, :vms_and_templates, {}, {:without_sti => true}) do |builder|
      builder.vm_template_shared
      builder.add_properties(:custom_reconnect_block => nil)
      builder.add_properties(:manager_uuids => references(:vms)) if targeted?
    end
  end
end
