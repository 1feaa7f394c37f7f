class ManageIQ::Providers::__NAME__::InfraManager::RefreshWorker < ManageIQ::Providers::BaseManager::RefreshWorker
  def self.settings_name
    :ems_refresh_worker___SNAKE___infra
  end
end
