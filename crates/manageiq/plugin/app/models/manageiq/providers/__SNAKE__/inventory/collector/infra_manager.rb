class ManageIQ::Providers::__NAME__::Inventory::Collector::InfraManager < ManageIQ::Providers::__NAME__::Inventory::Collector
end
