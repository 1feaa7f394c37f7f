class ManageIQ::Providers::__NAME__::Inventory < ManageIQ::Providers::Inventory
  # Targets named by events or by the UI: a VM (or a list of VMs) is a targeted refresh, the
  # manager itself a full one.
  def self.build(ems, target)
    if target.kind_of?(InventoryRefresh::TargetCollection) || target.kind_of?(ManageIQ::Providers::__NAME__::InfraManager::Vm)
      refs = target_vm_refs(target)
      return full(ems) if refs.nil?

      collector = ManageIQ::Providers::__NAME__::Inventory::Collector::TargetCollection.new(ems, refs)
      persister = ManageIQ::Providers::__NAME__::Inventory::Persister::TargetCollection.new(ems, refs)
    else
      return full(ems)
    end
    new(persister, collector, ManageIQ::Providers::__NAME__::Inventory::Parser::InfraManager.new)
  end

  def self.full(ems)
    new(ManageIQ::Providers::__NAME__::Inventory::Persister::InfraManager.new(ems, ems),
        ManageIQ::Providers::__NAME__::Inventory::Collector::InfraManager.new(ems, ems),
        ManageIQ::Providers::__NAME__::Inventory::Parser::InfraManager.new)
  end

  # The VM ems_refs of a target, or nil when it asks for the whole manager.
  def self.target_vm_refs(target)
    return [target.ems_ref] unless target.respond_to?(:targets)
    return nil if target.targets.any? { |t| t.association != :vms_and_templates }

    target.targets.map { |t| t.manager_ref[:ems_ref] }.compact.uniq
  end
end
