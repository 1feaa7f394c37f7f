class ManageIQ::Providers::__NAME__::Inventory::Persister::TargetCollection < ManageIQ::Providers::__NAME__::Inventory::Persister
  def initialize(manager, vm_refs)
    @vm_refs = vm_refs
    super(manager, nil)
  end

  def targeted?
    true
  end

  def references(_collection)
    @vm_refs
  end

  # Hosts and clusters a targeted answer carries are updated, never deleted.
  def strategy
    :local_db_find_missing_references
  end
end
