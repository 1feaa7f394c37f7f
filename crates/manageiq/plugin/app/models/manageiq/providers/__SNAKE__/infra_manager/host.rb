class ManageIQ::Providers::__NAME__::InfraManager::Host < ManageIQ::Providers::InfraManager::Host
end
