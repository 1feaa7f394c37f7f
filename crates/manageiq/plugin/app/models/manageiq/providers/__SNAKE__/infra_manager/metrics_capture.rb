class ManageIQ::Providers::__NAME__::InfraManager::MetricsCapture < ManageIQ::Providers::InfraManager::MetricsCapture
  COUNTER_INFO = {
    "cpu_usage_rate_average"     => {:unit_key => "percent"},
    "disk_usage_rate_average"    => {:unit_key => "kilobytespersecond"},
    "mem_usage_absolute_average" => {:unit_key => "percent"},
    "net_usage_rate_average"     => {:unit_key => "kilobytespersecond"}
  }.freeze

  VIM_STYLE_COUNTERS = COUNTER_INFO.each_with_object({}) do |(name, info), counters|
    counters[name] = {
      :counter_key           => name,
      :instance              => "",
      :capture_interval      => "20",
      :precision             => 1,
      :rollup                => "average",
      :unit_key              => info[:unit_key],
      :capture_interval_name => "realtime"
    }
  end.freeze

  def perf_collect_metrics(interval_name, start_time = nil, end_time = nil)
    end_time   ||= Time.now.utc
    start_time ||= end_time - 4 * 3600
    interval = interval_name.to_s == "hourly" ? "hourly" : "realtime"
    values = target.ext_management_system.with_provider_connection do |conn|
      conn.metrics(target.ems_ref, start_time, end_time, interval)
    end
    by_ts = values.each_with_object({}) { |(ts, counters), out| out[Time.parse(ts).utc] = counters }
    [{target.ems_ref => VIM_STYLE_COUNTERS}, {target.ems_ref => by_ts}]
  end
end
