class ManageIQ::Providers::__NAME__::InfraManager::MetricsCollectorWorker < ManageIQ::Providers::BaseManager::MetricsCollectorWorker
  def self.settings_name
    :ems_metrics_collector_worker___SNAKE__
  end
end
