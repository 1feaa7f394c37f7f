class ManageIQ::Providers::__NAME__::Inventory::Collector::TargetCollection < ManageIQ::Providers::__NAME__::Inventory::Collector
  def initialize(manager, vm_refs)
    super(manager, nil)
    @vm_refs = vm_refs
  end

  # `inventory --vm ...` answers those VMs plus their hosts and cluster.
  def vm_refs
    @vm_refs
  end
end
