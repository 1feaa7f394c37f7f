class ManageIQ::Providers::__NAME__::Inventory::Collector < ManageIQ::Providers::Inventory::Collector
  # The only layer that calls the backend: one CLI call, cached.
  def inventory
    @inventory ||= connection.inventory(vm_refs)
  end

  def clusters
    inventory["clusters"] || []
  end

  def hosts
    inventory["hosts"] || []
  end

  def storages
    inventory["storages"] || []
  end

  def vms
    inventory["vms"] || []
  end

  def vm_refs
    []
  end

  private

  def connection
    @connection ||= manager.connect
  end
end
