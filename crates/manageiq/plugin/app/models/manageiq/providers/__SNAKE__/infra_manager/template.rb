class ManageIQ::Providers::__NAME__::InfraManager::Template < ManageIQ::Providers::InfraManager::Template
  supports :provisioning

  def self.calculate_power_state(_raw_power_state)
    "never"
  end

  # Clones this template into a new VM; returns the new VM's ems_ref.
  def raw_clone(name, cpus = nil, memory_mb = nil)
    with_provider_connection do |conn|
      conn.operation("clone", nil, :template => ems_ref, :name => name, :cpus => cpus, :memory_mb => memory_mb, :wait => true)["new_vm"]
    end
  end
end
