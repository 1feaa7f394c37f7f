class ManageIQ::Providers::__NAME__::Inventory::Persister::InfraManager < ManageIQ::Providers::__NAME__::Inventory::Persister
end
