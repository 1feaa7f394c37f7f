module ManageIQ
  module Providers
    module __NAME__
      class Engine < ::Rails::Engine
        isolate_namespace ManageIQ::Providers::__NAME__

        config.autoload_paths << root.join("lib").to_s

        def self.vmdb_plugin?
          true
        end

        def self.plugin_name
          _("__NAME__ (polyvisor)")
        end
      end
    end
  end
end
